"""ROS 2 side of deer_vla: policy, monitor and sim nodes, the node graph, bringup, record/replay.

Modules with one job each; the pure helpers (image conversion, action
post-processing, budget monitoring, MCAP I/O, graph description) import no
rclpy node machinery so they can be tested and reused offline.
"""
