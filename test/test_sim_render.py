"""Harness check (issue 2): one Meta-World camera frame renders headless.

Runs in a fresh interpreter with no X display, so the GL backend really is
the headless one (MUJOCO_GL, default egl; osmesa also works where installed).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, os
import numpy as np, mujoco
from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE as E
env = E["button-press-topdown-v3-goal-observable"]()
env.reset()
renderer = mujoco.Renderer(env.model, 48, 48)
renderer.update_scene(env.data, camera="topview")
img = renderer.render()
print(json.dumps({"shape": list(img.shape), "dtype": str(img.dtype), "std": float(img.std()),
                  "backend": os.environ.get("MUJOCO_GL")}))
"""


def test_metaworld_frame_renders_headless() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.setdefault("MUJOCO_GL", "egl")
    if env["MUJOCO_GL"] == "egl":
        env.setdefault("EGL_PLATFORM", "surfaceless")
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [48, 48, 3] and out["dtype"] == "uint8"
    assert out["std"] > 5.0, "the frame is (nearly) constant: nothing was rendered"


def test_a_renderer_that_cannot_get_gl_fails_with_its_error_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """No display for glfw (or no EGL): mujoco.Renderer raised, and its half-built object's __del__ printed an
    AttributeError traceback ('Exception ignored in ... _mjr_context') beside the one-line reason."""
    import gc
    import sys

    import mujoco
    import mujoco.renderer

    from deer_vla.sim.metaworld_env import SafeRenderer

    def no_gl(*_args: object) -> None:
        raise mujoco.FatalError("gladLoadGL error")

    monkeypatch.setattr(mujoco.renderer.gl_context, "GLContext", no_gl)
    ignored: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody/></mujoco>")
    with pytest.raises(mujoco.FatalError, match="gladLoadGL"):
        SafeRenderer(model, 16, 16)
    gc.collect()
    assert not ignored
