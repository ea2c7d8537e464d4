"""Who made a result and what kinds there are: the algorithm named in every object, its
Contributing Equipment and Algorithm Identification items, the series each kind goes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import PneumoscopeError

KINDS = ("seg", "sr", "sc")  # segmentation, structured report, secondary capture (burned-in overlay)
MANUFACTURER = "pneumoscope project"  # the Manufacturer of every result: how one is known again
# Objects that are no image a result (or a prediction) could be about, whatever their pixel data holds.
NOT_IMAGES = {"1.2.840.10008.5.1.4.1.1.66.4": "a segmentation", "1.2.840.10008.5.1.4.1.1.66.5": "a surface segmentation",
              "1.2.840.10008.5.1.4.1.1.11.1": "a presentation state", "1.2.840.10008.5.1.4.1.1.481.2": "an RT dose grid"}
OWN_KIND = {"1.2.840.10008.5.1.4.1.1.66.4": "segmentation", "1.2.840.10008.5.1.4.1.1.88.33": "structured report",
            "1.2.840.10008.5.1.4.1.1.7": "overlay"}
SERIES = {"seg": (9301, "AI pneumothorax segmentation"), "sr": (9302, "AI pneumothorax report"),
          "sc": (9303, "AI pneumothorax overlay (not for diagnosis)")}


def parse_kinds(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``seg,sr,sc`` (any subset, any order) as a tuple in the canonical order; one line for anything else."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in items if t not in KINDS]
    if unknown or not items:
        raise PneumoscopeError(f"--dicom-objects {','.join(items) or repr(text)}: choose any of {', '.join(KINDS)} "
                               "(comma-separated)")
    return tuple(k for k in KINDS if k in items)


@dataclass(frozen=True)
class Algorithm:
    """The algorithm named in every result: package, version, the run's weights and its model."""

    version: str  # pneumoscope's version
    weights_id: str  # the run's weights id (32 hex digits)
    model: str  # what ran, e.g. "U-Net resnet34 + XGBoost on DenseNet121 features"
    threshold: float | None  # stage-2 decision threshold (None: no classifier)
    name: str = "pneumoscope"
    manufacturer: str = MANUFACTURER

    @property
    def full_version(self) -> str:
        """Version with the weights it ran (the Algorithm Version, LO: 64 characters at most)."""
        return f"{self.version} weights {self.weights_id}"[:64]

    def uid(self, source_uid: str, kind: str, part: str = "instance", content: str = "") -> str:
        """A UID derived from the source instance, the weights, the kind and (for an instance) a digest
        of what it says: the same result made twice (a rerun, a node restarted) has the same UID, so a
        PACS stores it once; another answer (another rule, precision or threshold) gets a new one."""
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=[self.name, self.weights_id, source_uid, kind, part] + ([content] if content else []))


def made_by_pneumoscope(ds: Any, manufacturer: str = MANUFACTURER) -> str | None:
    """What result of pneumoscope's ``ds`` is ("overlay", "segmentation", ...), None when it is none:
    a result is never predicted again, by ``predict`` or by the node."""
    try:
        own = str(ds.get("Manufacturer", "") or "") == manufacturer or any(
            str(item.get("Manufacturer", "") or "") == manufacturer for item in ds.get("ContributingEquipmentSequence", []))
    except Exception:  # values pydicom cannot convert: not ours (ours are valid)
        return None
    return OWN_KIND.get(str(ds.get("SOPClassUID", "")), "result") if own else None


def equipment(algorithm: Algorithm) -> Any:
    """The Contributing Equipment item naming pneumoscope as the processing algorithm."""
    import highdicom as hd

    from . import codes

    return hd.ContributingEquipment(
        manufacturer=algorithm.manufacturer, purpose_of_reference=codes.PROCESSING,
        manufacturer_model_name=algorithm.model[:64], software_versions=algorithm.full_version,
        device_serial_number=algorithm.weights_id, contribution_description="Automatic pneumothorax detection")


def algorithm_identification(algorithm: Algorithm) -> Any:
    """Algorithm Identification Sequence: family Artificial Intelligence, name, version with weights."""
    import highdicom as hd

    from . import codes

    return hd.AlgorithmIdentificationSequence(name=algorithm.name, version=algorithm.full_version,
                                              family=codes.AI, source=algorithm.manufacturer)
