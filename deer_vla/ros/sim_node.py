"""Sim node: a Meta-World task behind ROS topics, stepped in lock-step with the policy.

Publishes camera images (sensor_msgs/Image, rgb8), the instruction
(transient-local String) and optionally proprioception; applies each raw
action received (std_msgs/Float32MultiArray, 7-D standard or the task's
spec layout); publishes per-episode success (std_msgs/Bool) and a JSON
result (std_msgs/String). If no action arrives within ``action_timeout_s``
the current observation is re-sent with a fresh stamp; a policy that answers it gated (dry run: a step record
with ``actuated: false`` and no action) gets it again every GATED_RESEND_S, so the episode goes on within a
second of ``~/enable``. With ``record_topic``
(the policy's step records) each action is paired with the record published
with it, whose ``stamp_ns`` names the observation it answers: an answer to an
earlier observation (a re-sent one answered twice) is dropped and counted,
never applied to the next state; without it (or while nothing publishes
there) the first action after each observation is taken. With ``policy_node``
set, episode 0 starts only once that lifecycle node reports "active" (its
``get_state`` service), so the first observation is not sent to a policy
that is still loading.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32MultiArray, String

from deer_vla.core import StepRecord
from deer_vla.ros.image_conv import rgb_to_image_msg
from deer_vla.ros.node_main import run_node
from deer_vla.ros.node_parameters import declare_parameters
from deer_vla.sim.tasks import EVAL_SEED_OFFSET, MAX_EPISODE_STEPS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, expand_tasks

SIM_DEFAULTS: dict[str, Any] = {
    "tasks": ["button-press-topdown"],  # task names or groups from deer_vla.sim.tasks; episodes cycle over them
    "episodes": 3,
    "seed": EVAL_SEED_OFFSET,  # episode i uses seed + i: held out from the demonstrations (seeds from 0)
    "rate_hz": 20.0,
    "image_size": 64,
    "cameras": ["static", "wrist"],
    "max_steps": 0,  # 0 = the adapter's default episode length
    "image_topic_prefix": "camera",  # images on <prefix>/<camera>/image_raw
    "instruction_topic": "instruction",
    "proprio_topic": "proprio",  # "" = do not publish proprioception
    "action_topic": "action",
    "success_topic": "episode_success",
    "result_topic": "episode_result",
    "action_timeout_s": 10.0,  # long: a re-send is for a lost message, not a slow step
    "frame_id": "camera",
    "policy_node": "",  # lifecycle policy to wait for (its <name>/get_state) before episode 0; "" = do not wait
    # the policy's step records: each action is applied only if its record's stamp is this observation's
    # ("" = the first action after each observation; a policy that publishes no records is answered so anyway)
    "record_topic": "step_record",
}
MAX_UNPAIRED = 100  # actions or records waiting for their other half: far more than a lock-step loop has in flight
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
GATED_RESEND_S = 1.0  # a gated policy's dry-run answer: the observation again this soon (a model step a second)
MAX_SIM_RATE_HZ = 1000.0  # MuJoCo steps and renders per tick: far beyond what a real control loop asks


@dataclass
class EpisodeResult:
    episode: int
    task: str
    instruction: str
    seed: int
    success: bool
    steps: int
    resends: int
    # actions dropped because their step record answered another observation (a re-sent one answered twice, or
    # a step the policy did not actuate): with record_topic only
    stale_answers: int = 0
    # the sim's topics another node also published on during the episode (SimNode.shared_topics): then a second
    # policy's actions stepped this simulator too, or its policy read another simulator's images: results unreliable
    shared_topics: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


class SimNode(Node):
    def __init__(self, name: str = "deer_vla_sim", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        p = declare_parameters(self, SIM_DEFAULTS)  # "-p rate_hz:=20" is a number, not a type error
        self._validate(p)
        self.p = p
        self.tasks = expand_tasks(p["tasks"])  # groups expand; unknown names fail here, listing the known ones
        self.results: list[EpisodeResult] = []
        self.finished = False
        self.error: str | None = None  # why the simulator stopped early (it could not build or step a task)
        self._adapters: dict[str, Any] = {}
        self._adapter: Any = None
        self._episode = -1
        self._steps = 0
        self._resends = 0
        self._stale_answers = 0
        self._sent_stamps: set[int] = set()  # the current observation's stamps: sent, and each re-send
        self._pairing = False  # actions paired with their step records (record_topic, published to): per episode
        self._verdicts: deque[bool] = deque(maxlen=MAX_UNPAIRED)  # per actuated record: does it answer the obs?
        self._answers: deque[np.ndarray | None] = deque(maxlen=MAX_UNPAIRED)  # actions (None: one not usable)
        self._shared: set[str] = set()
        self._obs: Any = None
        self._obs_sent_ns = 0
        self._gated_answer = False  # the policy answered the current observation gated: re-send it soon
        self._action: np.ndarray | None = None
        self._phase = "start"  # start -> instruction -> running -> start ... -> done
        self._image_pubs = {
            cam: self.create_publisher(Image, f"{p['image_topic_prefix']}/{cam}/image_raw", qos_profile_sensor_data)
            for cam in p["cameras"]
        }
        self._instruction_pub = self.create_publisher(String, p["instruction_topic"], LATCHED)
        self._proprio_pub = (
            self.create_publisher(Float32MultiArray, p["proprio_topic"], qos_profile_sensor_data)
            if p["proprio_topic"] else None
        )
        self._success_pub = self.create_publisher(Bool, p["success_topic"], 10)
        self._result_pub = self.create_publisher(String, p["result_topic"], QoSProfile(depth=100))
        self.create_subscription(Float32MultiArray, p["action_topic"], self._on_action, 10)
        if p["record_topic"]:
            self.create_subscription(String, p["record_topic"], self._on_record, QoSProfile(depth=100))
        self._policy_state = self.create_client(GetState, f"{p['policy_node']}/get_state") if p["policy_node"] else None
        self._policy_active = self._policy_state is None
        self._state_request: Any = None
        self._state_polled = 0.0
        # on the steady clock (the sim graph takes no use_sim_time): a system clock stepped back stopped the node
        # clock's timers for the length of the step
        self._timer = self.create_timer(1.0 / p["rate_hz"], self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))

    @staticmethod
    def _validate(p: dict[str, Any]) -> None:
        problems = []
        if not p["tasks"]:
            problems.append("'tasks' is empty")
        if p["episodes"] < 1:
            problems.append(f"'episodes' must be >= 1, got {p['episodes']}")
        # bounded above: inf or 1e9 Hz would be a 0 ns timer (a busy core), a huge image size a renderer
        # that takes all the memory before the first frame
        if not 0 < p["rate_hz"] <= MAX_SIM_RATE_HZ:
            problems.append(f"'rate_hz' must be in (0, {MAX_SIM_RATE_HZ:g}] Hz, got {p['rate_hz']}")
        # the simulator's own limits, checked here: past them the first episode failed, after the policy loaded
        if not MIN_IMAGE_SIZE <= p["image_size"] <= MAX_IMAGE_SIZE:
            problems.append(f"'image_size' must be in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} (the renderer's offscreen "
                            f"buffer), got {p['image_size']}")
        if not p["cameras"]:
            problems.append("'cameras' is empty")
        elif len(set(p["cameras"])) != len(p["cameras"]):
            problems.append(f"'cameras' repeats a camera: {list(p['cameras'])}")
        if not 0 <= p["max_steps"] <= MAX_EPISODE_STEPS:
            problems.append(f"'max_steps' must be in 0..{MAX_EPISODE_STEPS} (0 = the task's own; Meta-World's "
                            f"episode limit), got {p['max_steps']}")
        if p["seed"] < 0:
            problems.append(f"'seed' must be >= 0, got {p['seed']}")
        if not 0 < p["action_timeout_s"] < float("inf"):
            problems.append(f"'action_timeout_s' must be a finite number > 0, got {p['action_timeout_s']}")
        if problems:
            raise ValueError("invalid sim parameters: " + "; ".join(problems))

    # -- episodes ------------------------------------------------------------------------
    def _adapter_for(self, task: Any) -> Any:
        if task.name not in self._adapters:
            from deer_vla.sim.metaworld_env import MetaWorldAdapter

            # One simulator at a time: a task change closes the previous task's MuJoCo model and
            # renderer (each holds hundreds of MB; keeping every task's grew a soak by ~660 MB).
            for old in self._adapters.values():
                old.close()
            self._adapters.clear()

            kwargs: dict[str, Any] = {"image_size": self.p["image_size"], "cameras": tuple(self.p["cameras"]),
                                      "seed": self.p["seed"]}
            if self.p["max_steps"]:
                kwargs["max_steps"] = self.p["max_steps"]
            self._adapters[task.name] = MetaWorldAdapter(task, **kwargs)
        return self._adapters[task.name]

    def _start_episode(self) -> None:
        self._episode += 1
        task = self.tasks[self._episode % len(self.tasks)]
        self._adapter = self._adapter_for(task)
        seed = int(self.p["seed"]) + self._episode
        self._obs = self._adapter.reset(seed=seed)
        self._steps, self._resends, self._stale_answers = 0, 0, 0
        self._pairing = bool(self.p["record_topic"]) and self._publisher_count(self.p["record_topic"]) > 0
        if not self._pairing:  # halves left from paired episodes would pair with the wrong ones when it resumes
            self._verdicts.clear()
            self._answers.clear()
        self._task_name, self._seed = task.name, seed
        self._shared = set(self.shared_topics())
        self._instruction_pub.publish(String(data=self._obs.instruction))
        self.get_logger().info(f"episode {self._episode}: {task.name} '{self._obs.instruction}' (seed {seed})")
        self._phase = "instruction"  # images go out on the next tick, after the instruction

    def _send_observation(self, resend: bool = False) -> None:
        stamp = self.get_clock().now()
        if self._proprio_pub is not None and self._obs.proprio is not None:
            self._proprio_pub.publish(Float32MultiArray(data=[float(v) for v in self._obs.proprio]))
        for cam, pub in self._image_pubs.items():
            pub.publish(rgb_to_image_msg(self._obs.images[cam], stamp.to_msg(), frame_id=f"{self.p['frame_id']}_{cam}"))
        self._action = None
        self._gated_answer = False
        self._obs_sent_ns = stamp.nanoseconds
        # a re-sent observation is answered by a record of either stamp; a new one by its own only
        self._sent_stamps = ({*self._sent_stamps, stamp.nanoseconds} if resend else {stamp.nanoseconds})

    def _publisher_count(self, topic: str) -> int:
        """Publishers on the topic this node actually uses for ``topic``: count_publishers expands a name but
        applies no remap, so a remapped topic was counted under its old name."""
        return self.count_publishers(self.resolve_topic_name(topic))

    def shared_topics(self) -> dict[str, int]:
        """{topic: publishers} for each of the sim's topics with more publishers than its own graph has: one
        policy on the action topic, this node alone on the instruction and image topics. More means a second
        policy or simulator in the same ROS domain (e.g. two demos at once): every policy's action steps this
        simulator, and a policy reads both simulators' images, so the episodes measure nothing."""
        images = [f"{self.p['image_topic_prefix']}/{cam}/image_raw" for cam in self.p["cameras"]]
        topics = [self.p["action_topic"], self.p["instruction_topic"], *images]
        counts = {topic: self._publisher_count(topic) for topic in topics}
        shared = {topic: n for topic, n in counts.items() if n > 1}
        instruction = self.p["instruction_topic"]
        if set(shared) - {instruction}:
            self.get_logger().error(
                "other nodes publish on this simulator's topics ("
                + ", ".join(f"'{t}': {n} publishers" for t, n in shared.items())
                + "): a second policy or simulator shares this ROS domain and the episodes' results are unreliable; "
                "give each run its own ROS_DOMAIN_ID", throttle_duration_sec=10.0)
        elif shared:  # an operator's or a planner's instruction: the policy may run it instead of the episode's
            self.get_logger().warn(
                f"another node publishes on '{instruction}' ({shared[instruction]} publishers: an operator, a "
                "planner or a second simulator): the policy may run its instruction instead of the episode's, so "
                "this episode's result may not be its task's (marked in its shared_topics)",
                throttle_duration_sec=10.0)
        return shared

    def _finish_episode(self, success: bool) -> None:
        self._shared.update(self.shared_topics())
        result = EpisodeResult(self._episode, self._task_name, self._obs.instruction, self._seed, bool(success),
                               self._steps, self._resends, self._stale_answers, sorted(self._shared))
        self.results.append(result)
        self._success_pub.publish(Bool(data=bool(success)))
        self._result_pub.publish(String(data=result.to_json()))
        verdict = "SUCCESS" if success else "failure"
        self.get_logger().info(f"episode {result.episode} {verdict} in {result.steps} steps")
        if len(self.results) >= self.p["episodes"]:
            self.finished = True
            self._phase = "done"
        else:
            self._phase = "start"

    def _policy_is_active(self) -> bool:
        """Poll the policy's lifecycle state (non-blocking) until it is active; then always True."""
        if self._policy_active or self._policy_state is None:
            return True
        if self._state_request is not None and self._state_request.done():
            response = self._state_request.result()
            self._state_request = None
            if response is not None and response.current_state.id == State.PRIMARY_STATE_ACTIVE:
                self._policy_active = True
                self.get_logger().info(f"policy '{self.p['policy_node']}' is active: starting episode 0")
                return True
        now = time.monotonic()
        if self._state_request is None and now - self._state_polled >= 0.2 and self._policy_state.service_is_ready():
            self._state_polled = now
            self._state_request = self._policy_state.call_async(GetState.Request())
        self.get_logger().info(f"waiting for policy '{self.p['policy_node']}' to become active",
                               throttle_duration_sec=5.0)
        return False

    def _tick(self) -> None:
        if self._phase == "done":
            return
        try:
            self._advance()
        except Exception as exc:  # MuJoCo cannot render here (MUJOCO_GL=glfw without a display), a task fails
            # to build: one clear line and the graph ends, not a traceback out of the timer that kills the process
            gl = os.environ.get("MUJOCO_GL", "")
            hint = f" (MUJOCO_GL={gl}: a headless machine needs egl or osmesa)" if gl not in ("", "egl", "osmesa") \
                else ""
            self.error = f"{type(exc).__name__}: {exc}{hint}"
            self.get_logger().error(f"simulator failed in episode {self._episode}: {self.error}")
            self._phase = "done"
            self.finished = True

    def _advance(self) -> None:
        """One tick of the lock-step loop: start an episode, send its observation, or apply the action."""
        if self._phase == "start" and not self._policy_is_active():
            return
        if self._phase == "start":
            self._start_episode()
            return
        if self._phase == "instruction":
            self._phase = "running"
            self._send_observation()
            return
        if self._action is None:
            waited = (self.get_clock().now().nanoseconds - self._obs_sent_ns) * 1e-9
            if self._gated_answer and waited > min(GATED_RESEND_S, self.p["action_timeout_s"]):
                # a gated policy stepped it and sent nothing: ask again soon, so ~/enable goes on at once
                self._resends += 1
                self.get_logger().info(f"the policy answered gated (dry run); re-sending the observation every "
                                       f"{GATED_RESEND_S:g} s until it actuates", throttle_duration_sec=30.0)
                self._send_observation(resend=True)
            elif waited > self.p["action_timeout_s"]:
                self._resends += 1
                self.get_logger().warn(f"no action for {waited:.1f} s; re-sending the observation",
                                       throttle_duration_sec=5.0)
                self._send_observation(resend=True)
            return
        result = self._adapter.step(self._action)
        self._steps += 1
        self._obs = result.observation
        if result.success or result.done:
            self._finish_episode(result.success)
        else:
            self._send_observation()

    def _usable(self, action: np.ndarray) -> bool:
        """Whether ``action`` can step the simulator (else a throttled error says why)."""
        if action.size == 0 or not np.all(np.isfinite(action)):
            self.get_logger().error(f"invalid action ignored: {action}", throttle_duration_sec=2.0)
            return False
        if self._phase == "running":
            try:  # checked here: a wrong length reaching the adapter's step() would raise in the timer
                self._adapter.to_env_action(action)
            except ValueError as exc:
                self.get_logger().error(f"invalid action ignored: {exc}", throttle_duration_sec=2.0)
                return False
        return True

    def _on_action(self, msg: Float32MultiArray) -> None:
        raw = np.asarray(msg.data, dtype=np.float64)
        action = raw if self._usable(raw) else None
        if self._pairing:  # its record says which observation it answers (an unusable action keeps its place)
            self._answers.append(action)
            self._pair()
        elif action is not None and self._phase == "running":
            self._action = action

    def _on_record(self, msg: String) -> None:
        """The policy's step record: whether the action published with it answers the current observation."""
        if not self._pairing:
            return
        try:
            record = StepRecord.from_json(msg.data)
        except ValueError:
            return  # not a record (the monitor reports such); no action of ours goes with it
        if record.actuated is False:  # no action was published with it
            self._gated_answer = self._gated_answer or (self._phase == "running"
                                                        and record.stamp_ns in self._sent_stamps)
            return
        self._verdicts.append(self._phase == "running" and record.stamp_ns in self._sent_stamps)
        self._pair()

    def _pair(self) -> None:
        """Match actions with their records in publishing order (each topic keeps its order, the two topics may
        interleave either way): apply an action whose record answers the observation, drop the others."""
        while self._verdicts and self._answers:
            answers_now, action = self._verdicts.popleft(), self._answers.popleft()
            if answers_now and action is not None and self._action is None:
                self._action = action
                self._sent_stamps = set()  # answered: a second answer to it (its re-sent copy's) is stale
            elif self._phase == "running":
                self._stale_answers += 1
                self.get_logger().warn("an action answering an earlier observation was dropped (a re-sent "
                                       "observation answered twice?)", throttle_duration_sec=5.0)

    def success_rate(self) -> float:
        return sum(r.success for r in self.results) / len(self.results) if self.results else 0.0

    def destroy_node(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    def report(node: SimNode) -> int:
        # a simulator that failed, or a run stopped (SIGINT/SIGTERM) before its episodes, is no successful run
        # for launch or CI: 1, and 130 as a shell reports an interrupted command
        print(json.dumps({"success_rate": node.success_rate(), "episodes": [r.__dict__ for r in node.results],
                          "finished": node.finished, "error": node.error}))
        return 1 if node.error else 0 if node.finished else 130

    return run_node(SimNode, argv, until=lambda node: node.finished, on_done=report)


if __name__ == "__main__":
    sys.exit(main())
