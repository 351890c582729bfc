"""Imports go down the layers only: core <- control, model, sim <- data <- train, evaluation, ros <- cli.

Every module under deer_vla/ is parsed with ``ast`` and every import in it is
checked (module level, inside functions, under ``if TYPE_CHECKING``), because
a lazy import still ties the packages together. Siblings of one layer do not
import each other. ROS (rclpy, message packages, launch) is for ``ros`` and
the commands only, and ``core``/``control`` stay free of torch and the
simulator (numpy/scipy only), so they run and test anywhere.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deer_vla"

# package (or top-level module) -> layer; a higher layer may import a lower one
LAYERS: dict[str, int] = {
    "core": 0,
    "control": 1, "model": 1, "sim": 1,
    "data": 2,
    "train": 3, "evaluation": 3, "ros": 3,
    "cli": 4, "commands": 4,
}
# install plumbing beside the layers (the package's __init__, ament index hooks): stdlib and each other only
BOOTSTRAP = {"__init__", "_ament", "ament_hooks"}
ROS_MODULES = {"rclpy", "launch", "launch_ros", "rcl_interfaces", "builtin_interfaces", "ament_index_python",
               "lifecycle_msgs", "rosidl_runtime_py"}
ROS_ALLOWED = {"ros", "cli", "commands"}
HEAVY_MODULES = {"torch", "transformers", "safetensors", "mujoco", "metaworld", "gymnasium"}
NUMPY_ONLY = {"core", "control"}


@dataclass(frozen=True)
class Import:
    module: str  # dotted name of the importing module, e.g. deer_vla.evaluation.evaluator
    line: int
    target: str  # absolute dotted name imported, e.g. deer_vla.control.solve


def part_of(path: Path) -> str:
    """The layer unit of a module file: its sub-package, or its own name at the package's top level."""
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> list[Import]:
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(name, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(name, node.lineno, target))
    return found


def violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = part_of(path)
        if unit not in LAYERS and unit not in BOOTSTRAP:
            problems.append(f"{module_name(path)}: '{unit}' has no layer; add it to test_layers.LAYERS")
            continue
        for imp in imports_of(path):
            top = imp.target.split(".")[0]
            where = f"{imp.module} (line {imp.line}) imports {imp.target}"
            if top == "deer_vla":
                target_unit = imp.target.split(".")[1] if "." in imp.target else "__init__"
                if target_unit == unit:
                    continue
                if unit in BOOTSTRAP or target_unit in BOOTSTRAP:
                    if not (unit in BOOTSTRAP and target_unit in BOOTSTRAP):
                        problems.append(f"{where}: the install hooks and the layers do not import each other")
                    continue
                if target_unit not in LAYERS:
                    problems.append(f"{where}: '{target_unit}' has no layer")
                elif LAYERS[target_unit] > LAYERS[unit]:
                    problems.append(f"{where}: {unit} (layer {LAYERS[unit]}) imports the higher layer "
                                    f"{target_unit} (layer {LAYERS[target_unit]})")
                elif LAYERS[target_unit] == LAYERS[unit] and LAYERS[unit] < LAYERS["cli"]:
                    problems.append(f"{where}: {unit} and {target_unit} are siblings of layer {LAYERS[unit]}")
            elif (top in ROS_MODULES or top.endswith(("_msgs", "_srvs"))) and unit not in ROS_ALLOWED:
                problems.append(f"{where}: ROS is for {sorted(ROS_ALLOWED)} only")
            elif top in HEAVY_MODULES and unit in NUMPY_ONLY:
                problems.append(f"{where}: {unit} stays free of torch and the simulator")
    return problems


def test_imports_follow_the_layer_order() -> None:
    problems = violations()
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_the_check_sees_lazy_type_checking_and_relative_imports(tmp_path: Path, monkeypatch) -> None:
    """The checker itself: a data module importing ros inside a function, evaluation under TYPE_CHECKING,
    core importing model relatively and evaluation importing its sibling train are all reported, with
    module, line and import."""
    pkg = tmp_path / "deer_vla"
    for sub in ("core", "data", "ros", "evaluation", "model", "train"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "data" / "reader.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from deer_vla.evaluation import workers\n"
        "def read():\n    from deer_vla.ros.recorder import read_recording\n    import rclpy\n"
        "from deer_vla.core import Observation\n"
    )
    (pkg / "core" / "types.py").write_text("from ..model import policy\nimport torch\n")
    (pkg / "tools").mkdir()
    (pkg / "tools" / "x.py").write_text("")
    (pkg / "evaluation" / "objective.py").write_text("from deer_vla.train.calibrate import solve\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    found = "\n".join(violations())
    assert "deer_vla.data.reader (line 3) imports deer_vla.evaluation: data (layer 2) imports the higher" in found
    assert "deer_vla.data.reader (line 5) imports deer_vla.ros.recorder" in found
    assert "deer_vla.data.reader (line 6) imports rclpy: ROS is for" in found
    assert "deer_vla.core.types (line 1) imports deer_vla.model: core (layer 0) imports the higher" in found
    assert "deer_vla.core.types (line 2) imports torch: core stays free of torch" in found
    assert "deer_vla.evaluation.objective (line 1) imports deer_vla.train.calibrate: evaluation and train are " \
           "siblings of layer 3" in found
    assert "'tools' has no layer" in found
    assert "deer_vla.core import Observation" not in found and "line 7" not in found
