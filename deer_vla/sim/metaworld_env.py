"""Meta-World v3 behind the deer_vla observation/action types, rendered headless.

One adapter wraps one task's gymnasium environment (goal-observable variant,
so the scripted expert can read the goal from the state vector; the policy
only sees images, proprioception and the instruction). Object/goal positions
are drawn from the environment's own reset distribution with a generator
seeded per episode, so a seed always gives the same scene.

Rendering goes through ``mujoco.Renderer`` with shadows, reflections and the
skybox off (about 4x cheaper than MuJoCo's defaults). The GL backend is
chosen when MuJoCo is first imported, so this module picks a headless
default (EGL, surfaceless) unless MUJOCO_GL is already set; use
``MUJOCO_GL=osmesa`` where no EGL is available.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] == "egl":
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from deer_vla.core.action_spec import ActionSpec
from deer_vla.core.observation import Observation
from deer_vla.sim.tasks import TaskSpec, get_task

# Camera slots -> Meta-World camera names. "corner4" looks at the table from
# the front-left and sees every suite object; "gripperPOV" is fixed to the hand.
CAMERA_ALIASES: dict[str, str] = {"static": "corner4", "wrist": "gripperPOV"}
# Meta-World's corner cameras are rolled 180 degrees (their up axis points down):
# rotate their images by 180 degrees (a vertical flip alone would mirror the scene).
_FLIPPED = ("corner", "corner2", "corner3", "corner4")
MIN_IMAGE_SIZE = 16
PROPRIO_DIM = 4  # hand x, y, z (m) + gripper opening (1 open .. 0 closed)
# Meta-World moves the hand mocap 1 cm per unit action per step.
ACTION_SPEC = ActionSpec(axes=("x", "y", "z"), scale=(0.01, 0.01, 0.01))
_NO_FX = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX)


@dataclass
class StepResult:
    observation: Observation
    success: bool
    done: bool  # success, or the step limit reached
    info: dict[str, Any] = field(default_factory=dict)


def _expert_for(env_name: str) -> Any:
    import metaworld.policies as policies

    base = env_name.removesuffix("-v3")
    cls_name = "Sawyer" + "".join(p.capitalize() for p in base.split("-")) + "V3Policy"
    cls = getattr(policies, cls_name, None)
    if cls is None:
        raise ValueError(f"Meta-World has no scripted expert {cls_name} for {env_name}")
    return cls()


def _make_env(env_name: str) -> Any:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    key = f"{env_name}-goal-observable"
    if key not in ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE:
        raise ValueError(f"Meta-World has no environment {env_name!r}")
    env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[key]()
    # Draw object/goal positions from env.np_random (seeded per episode) instead of a frozen vector.
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    return env


class MetaWorldAdapter:
    """One Meta-World task as Observation in, normalised action out.

    ``task``: a suite name or TaskSpec. ``cameras``: slot names ("static",
    "wrist") or raw Meta-World camera names; an empty tuple renders nothing
    (state-only rollouts, e.g. to measure the experts). ``seed``: the first episode's
    seed; ``reset()`` without a seed continues seed, seed+1, ...
    """

    def __init__(
        self,
        task: str | TaskSpec,
        image_size: int = 64,
        cameras: tuple[str, ...] = ("static", "wrist"),
        max_steps: int | None = None,
        seed: int = 0,
    ) -> None:
        self.task = get_task(task)
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, got {image_size!r}")
        cameras = tuple(cameras)
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must not repeat, got {cameras}")
        self.max_steps = int(self.task.max_steps if max_steps is None else max_steps)
        self.image_size = image_size
        self.cameras = cameras
        self.action_spec = ACTION_SPEC
        self._env = _make_env(self.task.env_name)
        limit = int(self._env.max_path_length)
        if not 1 <= self.max_steps <= limit:
            raise ValueError(f"max_steps must be in 1..{limit} (Meta-World's episode limit), got {self.max_steps}")
        model = self._env.model
        names = [model.camera(i).name for i in range(model.ncam)]
        self._cam_ids: dict[str, int] = {}
        for cam in cameras:
            mw_name = CAMERA_ALIASES.get(cam, cam)
            if mw_name not in names:
                raise ValueError(f"unknown camera {cam!r}; use {sorted(CAMERA_ALIASES)} or one of {names}")
            self._cam_ids[cam] = names.index(mw_name)
        self._flip = {cam: CAMERA_ALIASES.get(cam, cam) in _FLIPPED for cam in cameras}
        max_w, max_h = model.vis.global_.offwidth, model.vis.global_.offheight
        if image_size > min(max_w, max_h):
            raise ValueError(f"image_size {image_size} exceeds the offscreen buffer {max_w}x{max_h}")
        self._renderer = mujoco.Renderer(model, image_size, image_size) if cameras else None
        self._expert = _expert_for(self.task.env_name)
        self._next_seed = int(seed)
        self._state: np.ndarray | None = None
        self._steps = 0
        self._done = True
        self._success = False
        self.seed: int | None = None
        self.instruction = self.task.instruction
        self._render_s = 0.0
        self._frames = 0

    # -- episode -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None, instruction: str | None = None) -> Observation:
        """Start an episode; ``instruction`` None = the task's canonical instruction."""
        if seed is None:
            seed = self._next_seed
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if instruction is not None and (not isinstance(instruction, str) or not instruction.strip()):
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        self._next_seed = seed + 1
        self.seed = seed
        self.instruction = instruction if instruction is not None else self.task.instruction
        self._env.seed(seed)
        state, _ = self._env.reset()
        self._state = np.asarray(state, dtype=np.float64)
        self._steps = 0
        self._done = False
        self._success = False
        return self._observation()

    def step(self, action: np.ndarray | list[float]) -> StepResult:
        """Apply a 4-D (x, y, z, gripper) or standard 7-D action in [-1, 1] (clipped; rotation dropped)."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError(f"episode is over after {self._steps} steps (success={self._success}); call reset()")
        act = self.to_env_action(action)
        state, _reward, _term, _trunc, info = self._env.step(act.astype(np.float32))
        self._state = np.asarray(state, dtype=np.float64)
        self._steps += 1
        self._success = bool(info.get("success", False))
        self._done = self._success or self._steps >= self.max_steps
        out_info = {"steps": self._steps, "seed": self.seed, "task": self.task.name, "action": act}
        return StepResult(self._observation(), self._success, self._done, out_info)

    def to_env_action(self, action: np.ndarray | list[float]) -> np.ndarray:
        """Validate and map an action to Meta-World's 4-D layout, clipped to [-1, 1]."""
        a = np.asarray(action, dtype=np.float64)
        if a.ndim != 1 or a.shape[0] not in (4, 7):
            raise ValueError(
                f"action must be 4-D (x, y, z, gripper) or 7-D (x, y, z, roll, pitch, yaw, gripper), "
                f"got shape {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a.tolist()}")
        if a.shape[0] == 7:
            a = self.action_spec.from_standard7(a)
        return self.action_spec.clip(a)

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state (4-D, in [-1, 1])."""
        if self._state is None:
            raise RuntimeError("call reset() before expert_action()")
        with warnings.catch_warnings():
            # The experts' gains saturate by design; Meta-World warns about it on every call site.
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            action = self._expert.get_action(self._state)
        return np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)

    # -- observation ------------------------------------------------------------------------
    def proprio(self) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state[:PROPRIO_DIM].astype(np.float32)

    def render(self, camera: str) -> np.ndarray:
        """HxWx3 uint8 RGB from one of this adapter's cameras."""
        if camera not in self._cam_ids:
            raise ValueError(f"camera {camera!r} not configured; this adapter has {list(self.cameras)}")
        assert self._renderer is not None
        t0 = time.perf_counter()
        self._renderer.update_scene(self._env.data, camera=self._cam_ids[camera])
        for flag in _NO_FX:
            self._renderer.scene.flags[flag] = 0
        img = self._renderer.render()
        if self._flip[camera]:
            img = img[::-1, ::-1]
        self._render_s += time.perf_counter() - t0
        self._frames += 1
        return np.ascontiguousarray(img, dtype=np.uint8)

    def _observation(self) -> Observation:
        return Observation(
            images={cam: self.render(cam) for cam in self.cameras},
            instruction=self.instruction,
            proprio=self.proprio(),
            stamp_ns=time.time_ns(),
            extras={"task": self.task.name, "seed": self.seed, "step": self._steps},
        )

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def render_counters(self) -> tuple[float, int]:
        """(seconds spent rendering, frames rendered) since construction."""
        return self._render_s, self._frames

    @property
    def render_ms_per_frame(self) -> float:
        """Mean wall time of one camera frame since construction (0 before the first)."""
        return 1000.0 * self._render_s / self._frames if self._frames else 0.0

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._env is not None:
            self._env.close()
            self._env = None

    def __enter__(self) -> MetaWorldAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
