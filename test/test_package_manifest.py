"""package.xml and setup.py as the ROS tools read them: colcon and rosdep on a robot.

colcon identifies an ament_python package through catkin_pkg's parser (an XML
error makes it a plain Python package: no ament index hook, `ros2 launch`
cannot find it), and `rosdep install --from-paths src --ignore-src` stops at
the first key rosdistro does not define. The keys below were read in
ros/rosdistro (`rosdep/python.yaml` at 000730dc, `jazzy/distribution.yaml` at
0006cdad, 2026-12-06): a key is added here only after checking it there.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# ROS 2 packages released in Jazzy (jazzy/distribution.yaml), and the repository that releases each
JAZZY_PACKAGES = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "lifecycle_msgs": "rcl_interfaces",
    "sensor_msgs": "common_interfaces", "std_msgs": "common_interfaces", "std_srvs": "common_interfaces",
    "geometry_msgs": "common_interfaces", "diagnostic_msgs": "common_interfaces",
    "ament_index_python": "ament_index", "launch": "launch", "launch_ros": "launch_ros",
    "ros2launch": "launch_ros", "ament_copyright": "ament_lint",
}
# rosdep keys (rosdep/python.yaml) and the apt package each resolves to on Ubuntu 24.04 and Debian 12. Keys
# rosdistro lacks (python3-torch, python3-rich, python3-safetensors-pip, python3-mujoco-pip, python3-optuna-pip,
# python3-mcap-pip) and pip keys (they install unpinned into the system Python) are left to requirements/base.txt.
APT_KEYS = {
    "python3-numpy": "python3-numpy", "python3-opencv": "python3-opencv", "python3-yaml": "python3-yaml",
    "python3-pydantic": "python3-pydantic", "python3-matplotlib": "python3-matplotlib",
    "python3-tqdm": "python3-tqdm", "python3-h5py": "python3-h5py", "python3-psutil": "python3-psutil",
    "python3-scipy": "python3-scipy", "python3-pytest": "python3-pytest",
}
# modules the package imports that have such a key: importing one obliges package.xml to name it
KEYED_MODULES = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "pydantic": "python3-pydantic",
    "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm", "h5py": "python3-h5py", "scipy": "python3-scipy",
}
ROS_MODULE = re.compile(r"^(rclpy|launch|launch_ros|ament_index_python|\w+_(msgs|srvs|interfaces))$")


@pytest.fixture(scope="module")
def manifest():
    from catkin_pkg.package import parse_package

    package = parse_package(str(ROOT / "package.xml"))
    package.validate()  # raises InvalidPackage with every problem named
    return package


def _declared(package) -> set[str]:
    groups = (package.build_depends, package.buildtool_depends, package.exec_depends, package.test_depends,
              package.build_export_depends)
    return {dep.name for group in groups for dep in group}


def _imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in [*(ROOT / "deer_vla").rglob("*.py"), *(ROOT / "launch").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_colcon_reads_an_ament_python_package_of_setup_pys_version(manifest):
    setup = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    version = next(kw.value.value for node in ast.walk(setup) if isinstance(node, ast.Call)
                   for kw in node.keywords if kw.arg == "version")
    assert manifest.name == "deer_vla"
    assert manifest.get_build_type() == "ament_python"
    assert manifest.version == version


def test_every_dependency_key_is_one_rosdistro_defines(manifest):
    unknown = _declared(manifest) - set(JAZZY_PACKAGES) - set(APT_KEYS)
    assert not unknown, f"not checked against ros/rosdistro (rosdep install stops at an unknown key): {unknown}"


def test_every_imported_ros_package_and_keyed_module_is_declared(manifest):
    imported = _imported_top_level_modules()
    ros = {name for name in imported if ROS_MODULE.match(name)}
    assert {"rclpy", "sensor_msgs", "launch_ros"} <= ros  # the scan sees the package's imports
    wanted = ros | {KEYED_MODULES[name] for name in imported & set(KEYED_MODULES)}
    missing = wanted - {dep.name for dep in manifest.exec_depends}
    assert not missing, f"imported but not an exec_depend of package.xml: {missing}"


def test_setuptools_builds_the_package_without_dropping_data_folders(tmp_path):
    """The checkpoint folders under deer_vla/assets/ are data-only folders: left out of `packages`, setuptools
    (65 on colcon's side up to 84 here) warns that a future release drops them from installs. Built from links to
    the source so that nothing lands in the checkout."""
    for name in ("setup.py", "setup.cfg", "package.xml", "deer_vla", "resource", "launch", "config", "libexec"):
        (tmp_path / name).symlink_to(ROOT / name)
    out = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # the warning's class differs between setuptools releases, its banner does not
    assert "would be ignored" not in out.stderr, out.stderr[-3000:]
    for folder in (ROOT / "deer_vla" / "assets").glob("*_checkpoint"):
        built = tmp_path / "lib" / "deer_vla" / "assets" / folder.name
        assert sorted(p.name for p in built.iterdir()) == sorted(p.name for p in folder.iterdir() if p.is_file())
