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

Shared starts (tasks with ``TaskSpec.shared_start``, e.g. drawer-open-shared
and drawer-close-shared). Meta-World's open and close tasks of a pair start
from different states (drawer closed vs open, window closed vs open) and, for
the window and the faucet, place the object from different ranges, so the
first frame alone names the task. A shared start removes that cue:

* One env simulates and renders the scene for both tasks of a pair: the pair's
  *open* env (``SharedStart.scene_env``), with its own placement distribution.
  The two envs of a pair load the same MJCF model and have the same hand start
  and mocap limits, but their placement ranges (window, faucet) and reset code
  differ; running both instructions in one env makes the first frame identical
  by construction (tested pixel for pixel) instead of by reconciling two
  reset paths.
* After reset the pair's articulated joint is set to a value between its open
  and closed positions (drawer 8 cm out, window 10 cm open, faucet handle
  centred), and the goal markers are hidden: they mark one task's target.
* Each task is still judged by Meta-World's own ``evaluate_state`` of its own
  env: where that is not the scene env (the close tasks), a *mirror* of the
  task's env, reset with the same seed and the scene's placement distribution
  (so the same object pose and targets), is set to the scene's physics state
  every step; its observation feeds the task's scripted expert and its
  ``evaluate_state`` gives success. ``track_partner=True`` mirrors the pair's
  other task too, so an evaluation can tell a swapped completion (the other
  task done) from a plain failure.
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
from deer_vla.core.proprio_spec import ProprioSpec
from deer_vla.sim.tasks import MIN_IMAGE_SIZE, PROPRIO_DIM, TaskSpec, get_task

# Camera slots -> Meta-World camera names. "corner4" looks at the table from
# the front-left and sees every suite object; "gripperPOV" is fixed to the hand.
CAMERA_ALIASES: dict[str, str] = {"static": "corner4", "wrist": "gripperPOV"}
# Meta-World's corner cameras are rolled 180 degrees (their up axis points down):
# rotate their images by 180 degrees (a vertical flip alone would mirror the scene).
_FLIPPED = ("corner", "corner2", "corner3", "corner4")
PROPRIO_SPEC = ProprioSpec(names=("hand_x", "hand_y", "hand_z", "gripper_opening"), units=("m", "m", "m", ""))
# Meta-World moves the hand mocap 1 cm per unit action per step.
ACTION_SPEC = ActionSpec(axes=("x", "y", "z"), scale=(0.01, 0.01, 0.01))
_NO_FX = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX)


class SafeRenderer(mujoco.Renderer):
    """mujoco.Renderer whose close (and so its __del__) tolerates a construction that failed: without a GL
    context (no display for glfw, no EGL) the half-built object printed an AttributeError traceback beside the
    real error, whose one line is all a user should read."""

    def close(self) -> None:
        if not hasattr(self, "_mjr_context"):  # the GL context failed first: nothing else was made
            self._mjr_context = None
        if not hasattr(self, "_gl_context"):
            self._gl_context = None
        super().close()


@dataclass(frozen=True)
class SharedStart:
    """A start state from which both tasks of a same-scene pair are possible and look the same."""

    scene_env: str  # Meta-World env that simulates and renders the scene (and places the object) for both tasks
    joint: str  # the pair's articulated joint
    qpos: float  # its value at the start: between the open and the closed task's goal
    tasks: tuple[str, str]  # Meta-World env names of the pair, (open, close)


# The values keep each task well short of its own success at the start. Where each criterion holds (joint swept
# in Meta-World's own evaluate_state, seed 0): drawer open <= -0.16 (the joint's limit), close >= -0.031; window
# open >= 0.191, close <= 0.04; faucet open >= 1.38 rad, close <= -1.26 rad. docs/shared_starts.md has the
# experts' figures from these starts.
SHARED_STARTS: dict[str, SharedStart] = {
    "drawer": SharedStart("drawer-open-v3", "goal_slidey", -0.08, ("drawer-open-v3", "drawer-close-v3")),
    "window": SharedStart("window-open-v3", "window_slide", 0.1, ("window-open-v3", "window-close-v3")),
    "faucet": SharedStart("faucet-open-v3", "knob_Joint_1", 0.0, ("faucet-open-v3", "faucet-close-v3")),
}


def shared_start_for(task: TaskSpec) -> SharedStart | None:
    if task.shared_start is None:
        return None
    start = SHARED_STARTS.get(task.shared_start)
    if start is None:
        raise ValueError(f"task {task.name}: unknown shared start {task.shared_start!r}; "
                         f"known: {sorted(SHARED_STARTS)}")
    if task.env_name not in start.tasks:
        raise ValueError(f"task {task.name}: env {task.env_name} is not one of shared start {task.shared_start}'s "
                         f"{start.tasks}")
    return start


class _Mirror:
    """A task's own Meta-World env kept at another env's physics state: its observation and success criterion."""

    def __init__(self, env_name: str, scene: Any) -> None:
        self.env = _make_env(env_name)
        # Same placement distribution as the scene, so the same seed gives the same object pose and targets.
        self.env._random_reset_space = scene._random_reset_space

    def reset(self, seed: int, scene: Any) -> np.ndarray:
        self.env.seed(seed)
        self.env.reset()
        for body in ("drawer", "window", "faucetBase"):
            if _has_body(scene.model, body) and not np.allclose(scene.model.body(body).pos,
                                                                self.env.model.body(body).pos):
                raise RuntimeError(f"mirror of {type(self.env).__name__} placed {body!r} at "
                                   f"{self.env.model.body(body).pos}, the scene at {scene.model.body(body).pos}")
        return self.sync(scene)

    def sync(self, scene: Any) -> np.ndarray:
        d, src = self.env.data, scene.data
        d.qpos[:] = src.qpos
        d.qvel[:] = src.qvel
        d.mocap_pos[:] = src.mocap_pos
        d.mocap_quat[:] = src.mocap_quat
        mujoco.mj_forward(self.env.model, d)
        obs = self.env._get_obs()
        space = self.env.sawyer_observation_space  # clipped as Meta-World's step() clips its own observation
        return np.clip(obs, space.low, space.high).astype(np.float64)

    def success(self, obs: np.ndarray, action: np.ndarray) -> bool:
        _reward, info = self.env.evaluate_state(obs, action.astype(np.float32))
        return bool(info["success"])

    def close(self) -> None:
        self.env.close()


def _has_body(model: Any, name: str) -> bool:
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) >= 0


def _refresh_start_caches(env: Any) -> None:
    """Re-read what reset_model cached from the joint's old start value (reward shaping only, not success)."""
    if hasattr(env, "window_handle_pos_init"):
        env.window_handle_pos_init = env._get_pos_objects()
    from metaworld.envs.sawyer_drawer_close_v3 import SawyerDrawerCloseEnvV3

    if isinstance(env, SawyerDrawerCloseEnvV3):  # its obj_init_pos is the handle at the start, not the body
        env.obj_init_pos = env._get_pos_objects()


@dataclass
class StepResult:
    observation: Observation
    success: bool
    done: bool  # success, or the step limit reached
    info: dict[str, Any] = field(default_factory=dict)


# Experts whose class name does not follow the env name (peg-insert-side-v3 -> SawyerPegInsertionSideV3Policy).
_EXPERT_CLASS: dict[str, str] = {"peg-insert-side-v3": "SawyerPegInsertionSideV3Policy"}


def _expert_for(env_name: str) -> Any:
    import metaworld.policies as policies

    base = env_name.removesuffix("-v3")
    cls_name = _EXPERT_CLASS.get(env_name) or "Sawyer" + "".join(p.capitalize() for p in base.split("-")) + "V3Policy"
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


def _expert_step(expert: Any, state: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # The experts' gains saturate by design; Meta-World warns about it on every call site.
        warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
        action = expert.get_action(state)
    return np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)


class MetaWorldAdapter:
    """One Meta-World task as Observation in, normalised action out.

    ``task``: a suite name or TaskSpec. ``cameras``: slot names ("static",
    "wrist") or raw Meta-World camera names; an empty tuple renders nothing
    (state-only rollouts, e.g. to measure the experts). ``seed``: the first episode's
    seed; ``reset()`` without a seed continues seed, seed+1, ... ``track_partner``
    (shared-start tasks only): also judge the pair's other task every step
    (``info["partner_success"]``: its criterion held at some step so far) and
    offer its expert (``partner_expert_action``).
    """

    def __init__(
        self,
        task: str | TaskSpec,
        image_size: int = 64,
        cameras: tuple[str, ...] = ("static", "wrist"),
        max_steps: int | None = None,
        seed: int = 0,
        track_partner: bool = False,
    ) -> None:
        self.task = get_task(task)
        self.shared = shared_start_for(self.task)
        if track_partner and self.shared is None:
            raise ValueError(f"track_partner needs a shared-start task; {self.task.name} has none")
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, got {image_size!r}")
        cameras = tuple(cameras)
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must not repeat, got {cameras}")
        self.max_steps = int(self.task.max_steps if max_steps is None else max_steps)
        self.image_size = image_size
        self.cameras = cameras
        self.action_spec = ACTION_SPEC
        self._env = _make_env(self.shared.scene_env if self.shared else self.task.env_name)
        # Shared starts: the task's own env (and the partner's) as mirrors of the scene, where it is another env.
        self._own: _Mirror | None = None
        self._partner: _Mirror | None = None
        self.partner_env: str | None = None
        if self.shared is not None:
            self._hide_goal_markers()
            if self.task.env_name != self.shared.scene_env:
                self._own = _Mirror(self.task.env_name, self._env)
            if track_partner:
                self.partner_env = next(e for e in self.shared.tasks if e != self.task.env_name)
                self._partner = None if self.partner_env == self.shared.scene_env else _Mirror(self.partner_env,
                                                                                                   self._env)
        self._partner_success = False
        self._partner_state: np.ndarray | None = None  # the partner task's own observation of the current state
        self._partner_expert = _expert_for(self.partner_env) if self.partner_env is not None else None
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
        self._renderer = SafeRenderer(model, image_size, image_size) if cameras else None
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
        if self.shared is not None:
            state = self._apply_shared_start(seed)
        self._state = np.asarray(state, dtype=np.float64)
        self._steps = 0
        self._done = False
        self._success = False
        self._partner_success = False
        return self._observation()

    def _apply_shared_start(self, seed: int) -> np.ndarray:
        """Set the pair's joint to the shared value; return the task's own observation of that state."""
        assert self.shared is not None
        env = self._env
        joint = env.data.joint(self.shared.joint)
        joint.qpos[:] = self.shared.qpos
        joint.qvel[:] = 0.0
        mujoco.mj_forward(env.model, env.data)
        _refresh_start_caches(env)
        scene_state = np.asarray(env._get_obs(), dtype=np.float64)
        for mirror in (self._own, self._partner):
            if mirror is not None:
                mirror.reset(seed, env)
                _refresh_start_caches(mirror.env)
        if self.partner_env is not None:
            self._partner_state = scene_state if self._partner is None else self._partner.sync(env)
        return scene_state if self._own is None else self._own.sync(env)

    def _hide_goal_markers(self) -> None:
        # Meta-World draws its goal sites (green / blue spheres); at a shared start one would mark one task's target.
        model = self._env.model
        for i in range(model.nsite):
            if model.site(i).name.startswith("goal"):
                model.site_rgba[i, 3] = 0.0

    def step(self, action: np.ndarray | list[float]) -> StepResult:
        """Apply a 4-D (x, y, z, gripper) or standard 7-D action in [-1, 1] (clipped; rotation dropped)."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError(f"episode is over after {self._steps} steps (success={self._success}); call reset()")
        act = self.to_env_action(action)
        state, _reward, _term, _trunc, info = self._env.step(act.astype(np.float32))
        self._steps += 1
        success = bool(info.get("success", False))
        if self.shared is not None:
            scene_state, scene_success = state, success
            if self._own is not None:  # judged by the task's own env, mirrored at the scene's state
                state = self._own.sync(self._env)
                success = self._own.success(state, act)
            if self.partner_env is not None:
                if self._partner is None:  # the partner is the scene env itself
                    self._partner_state, partner = np.asarray(scene_state, dtype=np.float64), scene_success
                else:
                    self._partner_state = self._partner.sync(self._env)
                    partner = self._partner.success(self._partner_state, act)
                self._partner_success = self._partner_success or partner
        self._state = np.asarray(state, dtype=np.float64)
        self._success = success
        self._done = self._success or self._steps >= self.max_steps
        out_info = {"steps": self._steps, "seed": self.seed, "task": self.task.name, "action": act}
        if self.partner_env is not None:
            # the pair's other task's criterion held at some step of this episode so far
            out_info["partner_success"] = self._partner_success
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
        return _expert_step(self._expert, self._state)

    def partner_expert_action(self) -> np.ndarray:
        """The pair's *other* task's scripted expert at the current state (needs ``track_partner=True``)."""
        if self._partner_expert is None:
            raise RuntimeError(f"{self.task.name}: partner_expert_action() needs track_partner=True")
        if self._partner_state is None:
            raise RuntimeError("call reset() before partner_expert_action()")
        return _expert_step(self._partner_expert, self._partner_state)

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
        for mirror in (self._own, self._partner):
            if mirror is not None:
                mirror.close()
        self._own = self._partner = None
        if self._env is not None:
            self._env.close()
            self._env = None

    def __enter__(self) -> MetaWorldAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
