"""Simulated robot: Meta-World sim node + policy node + monitor (graph "sim" of config/graph.yaml).

    ros2 launch deer_vla sim.launch.py

The same graph runs in one process with `deer-vla demo` / `deer-vla bringup --graph sim`.
"""
from deer_vla.ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("sim")
