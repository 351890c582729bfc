"""Shared helpers for the own-robot data tests: a teleoperation MCAP written like rosbag2, and tiny training.

The MCAP is built the way rosbag2 writes one: messages CDR-serialised by
rclpy.serialization.serialize_message, schemas as ros2msg definition text
(with the nested types appended after '=' separator lines), the ros2 profile.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SEP = "=" * 80 + "\n"
_TIME = "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
_HEADER = "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
_VECTOR3 = "MSG: geometry_msgs/Vector3\nfloat64 x\nfloat64 y\nfloat64 z\n"
_TWIST = "MSG: geometry_msgs/Twist\nVector3 linear\nVector3 angular\n"
SCHEMAS = {
    "sensor_msgs/msg/Image": "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
                             "uint8 is_bigendian\nuint32 step\nuint8[] data\n" + SEP + _HEADER + SEP + _TIME,
    "sensor_msgs/msg/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n"
                                       + SEP + _HEADER + SEP + _TIME,
    "geometry_msgs/msg/TwistStamped": "std_msgs/Header header\nTwist twist\n" + SEP + _HEADER + SEP + _TIME
                                      + SEP + _TWIST + SEP + _VECTOR3,
    "sensor_msgs/msg/JointState": "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\n"
                                  "float64[] effort\n" + SEP + _HEADER + SEP + _TIME,
    "std_msgs/msg/Float32MultiArray": "MultiArrayLayout layout\nfloat32[] data\n" + SEP
                                      + "MSG: std_msgs/MultiArrayLayout\nMultiArrayDimension[] dim\n"
                                      "uint32 data_offset\n" + SEP + "MSG: std_msgs/MultiArrayDimension\n"
                                      "string label\nuint32 size\nuint32 stride\n",
    "std_msgs/msg/Float64MultiArray": "MultiArrayLayout layout\nfloat64[] data\n" + SEP
                                      + "MSG: std_msgs/MultiArrayLayout\nMultiArrayDimension[] dim\n"
                                      "uint32 data_offset\n" + SEP + "MSG: std_msgs/MultiArrayDimension\n"
                                      "string label\nuint32 size\nuint32 stride\n",
    "std_msgs/msg/String": "string data\n",
    "std_msgs/msg/Float64": "float64 data\n",
}
JOINTS = ("shoulder", "elbow", "wrist")
TELEOP_INSTRUCTIONS = ("wipe the table", "turn the valve")


class RosbagLikeWriter:
    def __init__(self, path: Path) -> None:
        from mcap.writer import Writer

        self.stream = path.open("wb")
        self.writer = Writer(self.stream)
        self.writer.start(profile="ros2", library="rosbag2-like test writer")
        self.channels: dict[str, int] = {}
        self.schemas: dict[str, int] = {}

    def write(self, topic: str, msg: object, t_ns: int) -> None:
        from rclpy.serialization import serialize_message

        datatype = f"{type(msg).__module__.split('.')[0]}/msg/{type(msg).__name__}"
        if topic not in self.channels:
            if datatype not in self.schemas:
                self.schemas[datatype] = self.writer.register_schema(datatype, "ros2msg",
                                                                     SCHEMAS[datatype].encode())
            self.channels[topic] = self.writer.register_channel(topic, "cdr", self.schemas[datatype])
        self.writer.add_message(self.channels[topic], log_time=t_ns, data=serialize_message(msg), publish_time=t_ns)

    def close(self) -> None:
        self.writer.finish()
        self.stream.close()


def teleop_twist(t: float, instruction: str) -> tuple[np.ndarray, np.ndarray]:
    """The commanded (linear m/s, angular rad/s) at time t: the valve task turns (yaw), wiping moves in x."""
    if instruction == TELEOP_INSTRUCTIONS[1]:
        return np.array([0.0, 0.01, 0.0]), np.array([0.05 * np.sin(t), 0.0, 0.4 + 0.1 * np.cos(3 * t)])
    return np.array([0.05 * np.sin(2 * t), 0.02, -0.01]), np.array([0.0, 0.02 * np.cos(t), 0.05])


def write_teleop_mcap(path: Path, seconds: float = 6.0, gap: tuple[float, float] = (2.4, 3.4),
                      twist_frame: str = "tool0") -> Path:
    """20 Hz rgb8 camera, 10 Hz JPEG wrist camera, 20 Hz TwistStamped (in ``twist_frame``, as MoveIt Servo's tool
    frame teleoperation sends them), 5 Hz gripper, 20 Hz JointState;
    the instruction is sent once at 0.1 s (latched, as the policy node expects it) and changes at 3.5 s;
    every stream pauses during ``gap`` (the teleoperator stopped)."""
    import cv2
    from geometry_msgs.msg import TwistStamped
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import Float64, String

    rng = np.random.default_rng(0)
    writer = RosbagLikeWriter(path)
    events: list[tuple[float, str, object]] = [(0.1, "/instruction", String(data=TELEOP_INSTRUCTIONS[0])),
                                               (3.5, "/instruction", String(data=TELEOP_INSTRUCTIONS[1]))]
    for k in range(int(seconds * 20)):
        t = 0.2 + k / 20.0
        if gap[0] <= t < gap[1]:
            continue
        instruction = TELEOP_INSTRUCTIONS[0] if t < 3.5 else TELEOP_INSTRUCTIONS[1]
        img = np.full((48, 64, 3), (int(40 * t) % 256, 90, 160), np.uint8)
        img[10:20, (k % 50):(k % 50) + 10] = 255
        events.append((t, "/camera/image_raw", Image(height=48, width=64, encoding="rgb8", step=64 * 3,
                                                     data=img.tobytes())))
        if k % 2 == 0:
            ok, jpg = cv2.imencode(".jpg", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
            events.append((t + 0.003, "/wrist/image/compressed", CompressedImage(format="jpeg", data=jpg.tobytes())))
        lin, ang = teleop_twist(t, instruction)
        twist = TwistStamped()
        twist.header.frame_id = twist_frame
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = (float(v) for v in lin)
        twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = (float(v) for v in ang)
        events.append((t + 0.001, "/servo/delta_twist_cmds", twist))
        events.append((t + 0.002, "/joint_states", JointState(name=list(JOINTS), position=[t, -t, 0.5 * t])))
        if k % 4 == 0:
            events.append((t + 0.004, "/gripper_cmd", Float64(data=1.0 if (t % 2.0) > 1.0 else -1.0)))
    for t, topic, msg in sorted(events, key=lambda e: e[0]):
        writer.write(topic, msg, int(t * 1e9))
    writer.close()
    return path


def train_tiny(dataset: Path, out: Path, steps: int = 3) -> Path:
    """A few steps of the tiny preset on ``dataset``; returns the checkpoint directory (with thresholds)."""
    from deer_vla.control.thresholds import Thresholds
    from deer_vla.train.config import load_config
    from deer_vla.train.trainer import Trainer

    cfg = load_config(None, [
        "model_preset=tiny", f"dataset={dataset}", f"output_dir={out}", "window=4", "batch_size=2",
        f"joint.steps={steps}", "joint.warmup_steps=1", "refine.steps=1", "device=cpu", "num_threads=1",
        "log_every=1", "text=null",
    ])
    history = Trainer(cfg, show_progress=False).train()
    assert history and np.isfinite(history[-1]["loss"])
    from deer_vla.model.checkpoint import read_config

    exits = read_config(out).num_exits
    Thresholds(values=[0.0] * (exits - 1)).save(out / "thresholds.json")  # eta = 0: every step runs all exits
    return out
