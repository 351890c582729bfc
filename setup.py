"""ament_python package definition for deer_vla.

Under colcon the console scripts land in lib/deer_vla (see setup.cfg); under pip
they land in <prefix>/bin. Either way the launchers in libexec/ are installed in
<prefix>/lib/deer_vla, where `ros2 launch` / `ros2 run` look for node executables.
Python dependencies are pinned in requirements/*.txt, not here, so that a robot
with ROS 2 from apt can install the package without the ROS wheels.
"""
import shutil
from glob import glob
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

PACKAGE = "deer_vla"


class FreshBuildPy(build_py):
    """Build from an empty build/lib/deer_vla: setuptools copies the source over the previous build and never
    deletes, so a module removed or moved in the source (or an old checkpoint file) would still be installed."""

    def run(self):
        shutil.rmtree(Path(self.build_lib) / PACKAGE, ignore_errors=True)
        super().run()


setup(
    name=PACKAGE,
    version="0.1.0",
    # namespace discovery lists the checkpoint folders under assets/ as packages too: setuptools warns that
    # data-only folders left out of `packages` will be dropped from installs in a future release
    packages=find_namespace_packages(include=[PACKAGE, f"{PACKAGE}.*"], exclude=["*.__pycache__"]),
    package_data={PACKAGE: ["assets/**/*"]},  # every shipped checkpoint, assets/<name>_checkpoint (model.shipped)
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        # where launch_ros looks for node executables (pip ignores setup.cfg's install_scripts)
        (f"lib/{PACKAGE}", sorted(glob("libexec/*"))),
    ],
    python_requires=">=3.10",
    zip_safe=False,
    maintainer="deer_vla maintainers",
    maintainer_email="deer-vla@example.org",
    description="Dynamic early-exit vision-language-action policy for ROS 2 (DeeR-VLA).",
    license="Apache-2.0",
    cmdclass={"build_py": FreshBuildPy},
    entry_points={
        "console_scripts": [
            "deer-vla = deer_vla.cli:main",
            "policy_node = deer_vla.ros.executables:policy_node",
            "monitor_node = deer_vla.ros.executables:monitor_node",
            "sim_node = deer_vla.ros.executables:sim_node",
            "bringup = deer_vla.ros.executables:bringup",
        ],
    },
)
