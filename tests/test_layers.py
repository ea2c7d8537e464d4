"""The layout cannot drift unseen: every import in src/ points down the stack, and no modules import
each other in a circle (read from the code's own imports, lazy ones inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pneumoscope

SRC = Path(pneumoscope.__file__).parent
# Lowest first. A module may import from a lower layer, or from its own package (without a circle);
# rooms of one layer are siblings and never import each other.
LAYERS = [
    ("errors", "version", "stats", "soundness", "network"),
    ("device", "files", "config", "locks", "schema"),
    ("folders", "distributed", "weights_file"),
    ("data",),
    ("pictures", "model_card"),
    ("stage1", "dicom_results"),
    ("stage2",),
    ("inference",),
    ("upgrade",),
    ("study",),
    ("node", "serve"),
    ("cli",),
    ("__main__", "__init__"),
]
LAYER = {room: k for k, rooms in enumerate(LAYERS) for room in rooms}


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(["pneumoscope", *parts[:-1]] if parts[-1] == "__init__" else ["pneumoscope", *parts])


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> dict[str, set[str]]:
    """module -> the pneumoscope modules it imports (``from . import x`` as the module x when it is one)."""
    known = {_module(p) for p in SRC.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        me = _module(path)
        package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("pneumoscope")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.startswith("pneumoscope"):
                    target = node.module
                else:
                    continue
                subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
                found |= subs or {target}
        out[me] = {m for m in found if m != me}
    return out


def test_every_import_names_a_module_that_exists():
    """A relative import one level too far (``..files`` from a top-level module) fails only when its
    function runs; read here, it fails now."""
    known = {_module(p) for p in SRC.rglob("*.py")}
    missing = [f"{a} -> {b}" for a, targets in imports().items() for b in targets if b not in known]
    assert missing == []


def test_every_room_has_a_layer():
    rooms = {_room(m) for m in imports()}
    assert rooms - set(LAYER) == set(), "a new room: give it its place in LAYERS"


def test_no_import_runs_back_up_the_stack():
    back = [f"{a} -> {b}" for a, targets in imports().items() for b in targets
            if _room(a) != _room(b) and LAYER[_room(b)] >= LAYER[_room(a)]]
    assert back == []


def test_no_modules_import_each_other_in_a_circle():
    graph = imports()
    circles, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                circles.append(" -> ".join(path[path.index(n):] + [n]))
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert circles == []


# Source modules without a test module of their own, and the test module that exercises them.
COVERED_BY = {
    "cli/commands.py": "test_cli.py", "cli/parser.py": "test_cli.py", "cli/tables.py": "test_cli.py",
    "data/convert.py": "data/test_dicom.py", "data/dicom_bounds.py": "serve/test_limits.py", "data/pixels.py": "data/test_io.py",
    "data/prepare.py": "stage1/test_trainer.py", "data/transforms.py": "data/test_dataset.py",
    **{f"dicom_results/{m}.py": "dicom_results/test_results.py" for m in ("algorithm", "build", "capture", "codes", "seg", "source", "sr")},
    "distributed.py": "stage1/test_trainer.py",
    **{f"folders/{m}.py": "folders/test_run.py" for m in ("derived", "legacy", "names", "stage2", "study")},
    "errors.py": "test_reliability.py", "files.py": "test_reliability.py",
    "inference/backends.py": "inference/test_backend_choice.py", "inference/gradcam.py": "inference/test_batch.py",
    "inference/options.py": "inference/test_predictor.py", "inference/predict.py": "inference/test_batch.py",
    "inference/prediction_folder.py": "inference/test_kill_resume.py", "model_card.py": "stage1/test_collapse.py",
    "network.py": "stage1/test_unet.py", "node/filters.py": "node/test_listen.py", "node/service.py": "node/test_listen.py",
    "pictures.py": "study/test_report.py", "schema.py": "test_reliability.py", "serve/app.py": "serve/test_api.py", "serve/routes.py": "serve/test_api.py",
    "serve/access.py": "serve/test_api.py",
    "serve/port.py": "test_reliability.py", "serve/store.py": "serve/test_dicom_results.py", "stage1/engine.py": "stage1/test_trainer.py",
    "stage1/evaluation.py": "stage1/test_pipeline.py", "stage2/result.py": "stage2/test_pipeline.py",
    "stage2/extractors.py": "stage2/test_features.py", "stage2/loaded.py": "stage2/test_pipeline.py",
    "study/plots.py": "study/test_report.py", "version.py": "test_cli.py",
}


def test_every_module_has_its_test_module_or_a_named_one():
    """tests/ mirrors src/: a module's tests are tests/<folder>/test_<module>.py, or the one named above
    (listed in the README's code layout too)."""
    tests = Path(__file__).parent
    modules = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    alone = [m for m in modules if not (tests / Path(m).parent / f"test_{Path(m).name}").exists() and m not in COVERED_BY]
    stale = [m for m, t in COVERED_BY.items() if m not in modules or not (tests / t).exists()]
    assert alone == [] and stale == [], (alone, stale)
