"""Issue 2 harness: real rclpy image transport, isolation and the ament index."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def _image_msg(height: int, width: int, seed: int):
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
    msg.data = pixels.tobytes()
    return msg, pixels


def test_isolated_ros_environment(spare_ros_domain):
    """Each run holds its domain: a second claim (another pytest run's) gets another one. Two runs whose
    process ids were equal modulo 100 shared a domain and each other's topics."""
    import fcntl
    import tempfile

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    domain = int(os.environ["ROS_DOMAIN_ID"])
    assert 1 <= domain <= 100 and spare_ros_domain != domain and 1 <= spare_ros_domain <= 100
    held = os.open(os.path.join(tempfile.gettempdir(), f"deer_vla_test_ros_domain_{domain}.lock"), os.O_RDWR)
    try:
        with pytest.raises(OSError):
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(held)


def test_image_between_two_nodes_in_process(executor, spin_until):
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    sender = rclpy.create_node("harness_sender")
    receiver = rclpy.create_node("harness_receiver")
    executor.add_node(sender)
    executor.add_node(receiver)
    received: list[Image] = []
    receiver.create_subscription(Image, "harness/image", received.append, qos_profile_sensor_data)
    pub = sender.create_publisher(Image, "harness/image", qos_profile_sensor_data)
    msg, pixels = _image_msg(48, 64, seed=1)

    def delivered() -> bool:
        if not received:
            pub.publish(msg)
        return bool(received)

    assert spin_until(executor, delivered, timeout=10.0), "image never arrived"
    got = received[0]
    assert (got.height, got.width, got.encoding) == (48, 64, "rgb8")
    np.testing.assert_array_equal(np.frombuffer(bytes(got.data), np.uint8).reshape(48, 64, 3), pixels)


PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node("harness_remote_sender")
    pub = node.create_publisher(Image, "harness/remote_image", qos_profile_sensor_data)
    pixels = np.arange(32 * 40 * 3, dtype=np.uint32).astype(np.uint8).reshape(32, 40, 3)
    msg = Image(height=32, width=40, encoding="rgb8", step=120)
    msg.data = pixels.tobytes()
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_image_across_two_processes(executor, spin_until):
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    receiver = rclpy.create_node("harness_remote_receiver")
    executor.add_node(receiver)
    received: list[Image] = []
    receiver.create_subscription(Image, "harness/remote_image", received.append, qos_profile_sensor_data)
    # The child inherits ROS_DOMAIN_ID / localhost-only discovery from conftest.
    child = subprocess.Popen([sys.executable, "-c", PUBLISHER, "20"], env=dict(os.environ))
    try:
        assert spin_until(executor, lambda: bool(received), timeout=20.0), "no image from the other process"
    finally:
        child.terminate()
        child.wait(timeout=10)
    got = received[0]
    expected = np.arange(32 * 40 * 3, dtype=np.uint32).astype(np.uint8).reshape(32, 40, 3)
    np.testing.assert_array_equal(np.frombuffer(bytes(got.data), np.uint8).reshape(32, 40, 3), expected)


def test_other_domain_is_isolated(executor, spin_until, spare_ros_domain):
    """A publisher on another ROS_DOMAIN_ID must not reach this run's nodes."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    receiver = rclpy.create_node("harness_isolated_receiver")
    executor.add_node(receiver)
    received: list[Image] = []
    receiver.create_subscription(Image, "harness/remote_image", received.append, qos_profile_sensor_data)
    env = dict(os.environ, ROS_DOMAIN_ID=str(spare_ros_domain))
    child = subprocess.Popen([sys.executable, "-c", PUBLISHER, "4"], env=env)
    try:
        assert not spin_until(executor, lambda: bool(received), timeout=4.0)
    finally:
        child.terminate()
        child.wait(timeout=10)


def test_package_share_directory_found_in_venv():
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    import deer_vla  # noqa: F401  registers the venv prefix

    try:
        share = get_package_share_directory("deer_vla")
    except PackageNotFoundError:
        pytest.fail("deer_vla is not installed into the venv prefix; run scripts/install.sh")
    assert os.path.isfile(os.path.join(share, "package.xml"))
    assert os.path.isdir(os.path.join(share, "config"))
    assert os.path.isdir(os.path.join(share, "launch"))


def test_register_venv_prefix_is_idempotent(tmp_path, monkeypatch):
    from deer_vla._ament import register_venv_prefix

    (tmp_path / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", "/opt/ros/jazzy")
    assert register_venv_prefix(str(tmp_path)) is True
    assert register_venv_prefix(str(tmp_path)) is False
    assert os.environ["AMENT_PREFIX_PATH"] == os.pathsep.join(["/opt/ros/jazzy", str(tmp_path)])
    assert register_venv_prefix(str(tmp_path / "no-index")) is False


def test_stack_imports_in_venv():
    out = subprocess.run(
        [sys.executable, "-c", "import deer_vla, rclpy, torch, transformers, cv2, mujoco, metaworld; print('ok')"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
