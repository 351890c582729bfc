"""Policy node (managed: configured and activated at start, actuation gated) + monitor, for a real robot.

    ros2 launch deer_vla deer_vla.launch.py

Nodes, parameter files and remappings come from config/graph.yaml (graph
"robot"), the description the one-process bringup (`deer-vla bringup`)
also uses. Enable actuation with `ros2 service call /deer_vla_policy/enable
std_srvs/srv/SetBool "{data: true}"`.
"""
from deer_vla.ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("robot")
