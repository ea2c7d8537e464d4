"""What each file of a run folder must hold, checked when it is loaded.

A run folder is shared, copied and sometimes edited by hand. A value out of range there does not
fail loudly by itself: a stage-2 threshold of -5 makes every image "pneumothorax", a
post-processing rule with ``min_area = -1`` keeps every speck. So every file that changes an
answer is checked on load against the schema below (types, ranges, known names, lengths that
must agree), and a file that fails stops the command with one line naming the file and the
field, and what to do about it.

A field is described by a :class:`Num`, :class:`Text`, :class:`Flag` or :class:`Any_`; a file by a
mapping of field names to them (:func:`check`); cross-field rules live beside the file's reader.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PneumoscopeError

HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")


class DamagedFileError(PneumoscopeError):
    """A file of a run folder holds what pneumoscope never writes (edited, damaged or foreign)."""


@dataclass(frozen=True)
class Num:
    """A finite number in [lo, hi] (an integer when ``integer``); ``optional``: may be missing or null."""

    lo: float = -math.inf
    hi: float = math.inf
    integer: bool = False
    optional: bool = False

    def problem(self, v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"is {v!r}, not a number"
        if not math.isfinite(v):
            return f"is {v!r}, not a finite number"
        if self.integer and v != int(v):
            return f"is {v!r}, not a whole number"
        if not self.lo <= v <= self.hi:
            return f"is {v!r}, outside [{self.lo:g}, {self.hi:g}]"
        return None


@dataclass(frozen=True)
class Text:
    """A string: one of ``choices``, or matching ``pattern`` (a compiled regex, whole string)."""

    choices: tuple[str, ...] | None = None
    pattern: re.Pattern | None = None
    optional: bool = False

    def problem(self, v: Any) -> str | None:
        if not isinstance(v, str):
            return f"is {v!r}, not a string"
        if self.choices is not None and v not in self.choices:
            return f"is {v!r}, not one of {', '.join(self.choices)}"
        if self.pattern is not None and not self.pattern.fullmatch(v):
            return f"is {v!r}, not of the form this field has"
        return None


@dataclass(frozen=True)
class Flag:
    """A JSON boolean."""

    optional: bool = False

    def problem(self, v: Any) -> str | None:
        return None if isinstance(v, bool) else f"is {v!r}, not true or false"


@dataclass(frozen=True)
class Any_:
    """A value of one of ``types`` (e.g. a nested mapping checked by its own reader)."""

    types: tuple[type, ...]
    optional: bool = False

    def problem(self, v: Any) -> str | None:
        names = " or ".join("a mapping" if t is dict else "a list" if t is list else t.__name__ for t in self.types)
        return None if isinstance(v, self.types) else f"is {v!r:.60}, not {names}" + (" or null" if self.optional else "")


def fail(path: str | Path, field: str | None, problem: str, remedy: str) -> DamagedFileError:
    """The one-line error for a damaged file (``field`` None: the file as a whole)."""
    where = f"{path}: " + (f"field {field!r} {problem}" if field else problem)
    return DamagedFileError(f"{where}; {remedy}")


def check(data: Any, fields: dict[str, Num | Text | Flag | Any_], path: str | Path, remedy: str,
          prefix: str = "") -> dict:
    """``data`` checked against ``fields``; returns it. Extra keys are allowed (newer writers)."""
    if not isinstance(data, dict):
        raise fail(path, prefix.rstrip(".") or None, f"is {type(data).__name__}, not a mapping", remedy)
    for name, spec in fields.items():
        if name not in data or data[name] is None:
            if spec.optional:
                continue
            raise fail(path, prefix + name, "is missing", remedy)
        problem = spec.problem(data[name])
        if problem:
            raise fail(path, prefix + name, problem, remedy)
    return data


# -- the files ------------------------------------------------------------------------------
PROB = Num(0.0, 1.0)
WEIGHTS_ID = Text(pattern=HEX32)

POSTPROCESS = {"top": PROB, "min_area": PROB, "bottom": PROB, "weights_id": WEIGHTS_ID,
               "val_dice_kaggle": Num(0.0, 1.0, optional=True), "val_dice_kaggle_plain": Num(0.0, 1.0, optional=True),
               "val_balanced": Num(0.0, 1.0, optional=True), "val_guarded": Num(0.0, 1.0, optional=True),
               "objective": Text(("dice_kaggle", "balanced", "guarded"), optional=True)}
STAGE2_SUMMARY = {"threshold": PROB, "feature_extractor": Text(("densenet121", "seg-encoder")),
                  "calibration": Text(("none", "isotonic", "sigmoid"), optional=True), "n_features": Num(1, 1e7, True),
                  "fit_ids": Any_((list,), optional=True),
                  "weights_id": WEIGHTS_ID}
CLASSIFIER = {"format": Text(("pneumoscope-stage2-classifier/1",)), "n_boosters": Num(1, 1000, True),
              "members": Any_((list,))}
ISOTONIC = {"method": Text(("isotonic",)), "x": Any_((list,)), "y": Any_((list,))}
SIGMOID = {"method": Text(("sigmoid",)), "a": Num(), "b": Num()}
PRECISION = {"available": Flag(), "max_drop": Num(0, 1)}  # each record of the precision file (one per machine arithmetic)
EXPORT_REPORT = {"passed": Flag(), "tolerance": Num(0, 1), "weights_id": WEIGHTS_ID}
WEIGHTS_HEADER = {"format": Text(("pneumoscope-unet/1",)), "weights_id": WEIGHTS_ID, "config": Text(),
                  "split_sha": Text(pattern=HEX16), "state": Text()}


def check_calibration(c: Any, path: str | Path, where: str, remedy: str) -> None:
    """One member's calibration: none, isotonic breakpoints (finite, x ascending, y in [0, 1], same
    length) or sigmoid parameters (finite)."""
    if c is None:
        return
    if not isinstance(c, dict):
        raise fail(path, where, f"is {c!r:.60}, not a mapping or null", remedy)
    method = c.get("method")
    if method not in ("isotonic", "sigmoid"):
        raise fail(path, where + ".method", f"is {method!r}, not one of isotonic, sigmoid", remedy)
    if method == "sigmoid":
        check(c, SIGMOID, path, remedy, where + ".")
        return
    check(c, ISOTONIC, path, remedy, where + ".")
    x, y = c["x"], c["y"]
    if not x or len(x) != len(y):
        raise fail(path, where, f"has {len(x)} x and {len(y)} y breakpoints (need the same number, at least one)", remedy)
    for name, values, spec in (("x", x, Num()), ("y", y, PROB)):
        for i, v in enumerate(values):
            problem = spec.problem(v)
            if problem:
                raise fail(path, f"{where}.{name}[{i}]", problem, remedy)
    if any(b < a for a, b in zip(x, x[1:])):
        raise fail(path, f"{where}.x", "is not in ascending order", remedy)


def check_classifier(spec: Any, path: str | Path, remedy: str) -> dict:
    """The stage-2 classifier's description: format, one member per booster, each member's calibration."""
    check(spec, CLASSIFIER, path, remedy)
    if len(spec["members"]) != spec["n_boosters"]:
        raise fail(path, "members", f"lists {len(spec['members'])} members for {spec['n_boosters']} boosters", remedy)
    for i, member in enumerate(spec["members"]):
        check(member, {"calibration": Any_((dict,), optional=True)}, path, remedy, f"members[{i}].")
        check_calibration(member.get("calibration"), path, f"members[{i}].calibration", remedy)
    return spec
