"""HxWx3 uint8 RGB arrays -> sensor_msgs/Image; the other way is ``deer_vla.data.image_msg`` (no ROS needed)."""
from __future__ import annotations

import numpy as np

from deer_vla.data.image_msg import ImageConversionError


def rgb_to_image_msg(rgb: np.ndarray, stamp: object | None = None, frame_id: str = "") -> object:
    """HxWx3 uint8 RGB -> sensor_msgs/Image (rgb8)."""
    from sensor_msgs.msg import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected HxWx3 uint8 RGB, got shape {rgb.shape} dtype {rgb.dtype}")
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(rgb).tobytes()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    return msg
