"""Collecting, importing, recording and storing episodes: rules no other test pinned down (a mutation audit broke
each and every test passed). Broken, each would train on labels paired with the wrong frames, a gripper read the
wrong way round or a frozen pose, replay a step with half its inputs, lose what a log wrote, or accept a damaged
episode file."""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from robot_data_support import SCHEMAS, RosbagLikeWriter

from deer_vla.core import StepRecord
from deer_vla.data.collect import rollout_episode
from deer_vla.data.episodes import DatasetError, DatasetMeta, Episode, EpisodeDataset, EpisodeWriter, read_episode
from deer_vla.data.import_mcap import McapSources, import_mcap
from deer_vla.data.importing import fit_proprio_spec
from deer_vla.data.mcap_io import NO_SPLIT, McapLog, TruncatedMcapWarning, read_messages
from deer_vla.data.recording import ACTION, INSTRUCTION, RECORD, image_topic, read_recording

REPO = Path(__file__).resolve().parents[1]
IMAGE = {"header": {"stamp": {"sec": 0, "nanosec": 0}, "frame_id": ""}, "height": 16, "width": 16,
         "encoding": "rgb8", "is_bigendian": 0, "step": 48, "data": bytes(16 * 48)}

# --- collecting ---------------------------------------------------------------------------------


class CountingAdapter:
    """A simulator whose state is its step count k: the images, the proprioception and the expert's label at a
    state all say k, so a step stored with another step's frames shows."""

    cameras = ("static", "wrist")
    task = SimpleNamespace(name="drawer-open", train_instructions=("open the drawer",))

    def _observation(self) -> SimpleNamespace:
        return SimpleNamespace(images={c: np.full((8, 8, 3), self.k, np.uint8) for c in self.cameras},
                               proprio=np.full(4, self.k, np.float32))

    def reset(self, seed: int, instruction: str) -> SimpleNamespace:
        self.k = 0
        return self._observation()

    def expert_action(self) -> np.ndarray:
        return np.full(4, self.k / 100.0, np.float32)

    def step(self, action: np.ndarray) -> SimpleNamespace:
        self.k += 1
        return SimpleNamespace(observation=self._observation(), done=self.k >= 6, success=True)


def test_each_collected_label_is_stored_with_the_frames_and_proprio_it_was_computed_from() -> None:
    """Frames taken after the simulator stepped paired image k+1 with the expert's label at state k: the policy
    learned to act one step late."""
    ep = rollout_episode(CountingAdapter(), seed=3, noise=0.1)
    k = np.arange(ep.length)
    assert ep.length == 6
    np.testing.assert_allclose(ep.actions[:, 0], k / 100.0, rtol=1e-6)
    np.testing.assert_array_equal(ep.proprio[:, 0], k)
    for camera in CountingAdapter.cameras:
        np.testing.assert_array_equal(ep.images[camera][:, 0, 0, 0], k)


# --- importing ----------------------------------------------------------------------------------


def _gripper_recording(path: Path, kind: str, proprio_messages: int | None = None) -> Path:
    """30 ticks at 10 Hz: a PNG camera on /cam, a TwistStamped on /cmd and the gripper on /grip (a Bool, or a
    Float64 in deer_vla's -1 open / +1 closed), open for ticks 0..15 and closed from 16 on; with
    ``proprio_messages``, a Float32MultiArray on /prop (between the camera and the command) for the first that many
    ticks only."""
    import cv2
    from geometry_msgs.msg import TwistStamped
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Bool, Float32MultiArray, Float64

    writer = RosbagLikeWriter(path)
    for k in range(30):
        t = int(k * 1e8)
        _, png = cv2.imencode(".png", np.full((16, 16, 3), k * 8, np.uint8))
        writer.write("/cam", CompressedImage(format="png", data=png.tobytes()), t)
        twist = TwistStamped()
        twist.twist.linear.x = 0.01 * (1 + k % 3)
        twist.twist.angular.z = 0.02
        writer.write("/cmd", twist, t + 1000)
        closed = k > 15
        writer.write("/grip", Bool(data=closed) if kind == "bool" else Float64(data=1.0 if closed else -1.0),
                     t + 2000)
        if proprio_messages is not None and k < proprio_messages:
            writer.write("/prop", Float32MultiArray(data=[0.1 * k, -0.1 * k]), t + 500)
    writer.close()
    return path


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_an_imported_gripper_command_keeps_its_sign(kind: str, tmp_path: Path, monkeypatch) -> None:
    """A Bool true (closed) read as open, or the default -1 open / +1 closed mapping swapped, stored every
    demonstration's gripper the wrong way round: the policy learned to close where the operator opened."""
    monkeypatch.setitem(SCHEMAS, "std_msgs/msg/Bool", "bool data\n")
    rec = _gripper_recording(tmp_path / "g.mcap", kind)
    import_mcap(rec, tmp_path / "out", McapSources({"static": "/cam"}, "/cmd", instruction="pick it up",
                                                    gripper="/grip"), rate_hz=10.0, image_size=16)
    (ep,) = list(EpisodeDataset(tmp_path / "out"))
    grip = ep.actions[:, -1]
    # ticks fall on the command's times; the gripper message comes 1 us after, so tick k holds gripper message k - 1
    # (tick 0 none yet: open)
    assert ep.length == 30
    assert grip[:17].tolist() == [-1.0] * 17 and grip[17:].tolist() == [1.0] * 13, grip


def test_a_proprio_stream_that_stops_ends_the_imported_episode(tmp_path: Path) -> None:
    """Proprioception was not required to be recent: after its topic stopped, every tick took its last message,
    and the episode trained on a pose frozen for seconds while the arm moved on."""
    rec = _gripper_recording(tmp_path / "p.mcap", "float", proprio_messages=10)
    summary = import_mcap(rec, tmp_path / "out", McapSources({"static": "/cam"}, "/cmd", instruction="pick it up",
                                                             gripper="/grip", proprio="/prop"),
                          rate_hz=10.0, image_size=16)
    lengths = [e.length for e in EpisodeDataset(tmp_path / "out")]
    # the last proprio message comes 0.5 us before tick 9, so from tick 14 on it is older than max_age (0.5 s):
    # ticks 0..13 make the episode, 14..29 are dropped
    assert lengths == [14]
    assert summary["dropped_ticks"] == 16, summary


def test_the_fitted_proprio_spec_records_the_datas_mean_and_std() -> None:
    """The model standardises proprioception with the spec's mean and std: a std recorded wrong (twice the
    data's) fed the model inputs at half their spread, unlike the demonstrations it was trained to read."""
    states = np.random.default_rng(0).normal([1.0, -2.0, 0.5], [0.3, 2.0, 0.01], size=(200, 3))
    spec = fit_proprio_spec(states, None)
    np.testing.assert_allclose(spec.mean, states.mean(0), rtol=1e-6)
    np.testing.assert_allclose(spec.std, states.std(0), rtol=1e-6)


# --- MCAP logs ----------------------------------------------------------------------------------


def test_a_quiet_log_is_flushed_by_its_background_thread(tmp_path: Path) -> None:
    """A log that writes one message and then nothing kept it in memory until close: a crash lost it, not only
    the last flush interval's worth."""
    path = tmp_path / "quiet.mcap"
    log = McapLog(path, flush_interval_s=0.05, split=NO_SPLIT)
    try:
        log.write("/t", "std_msgs/msg/String", {"data": "hello"}, 1000)
        deadline = time.monotonic() + 20.0  # generous: a loaded machine may run the flusher late
        got: list[str] = []
        while time.monotonic() < deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the log is unfinished: what a crash now would leave
                got = [m.message.data for m in read_messages(path)]
            if got:
                break
            time.sleep(0.05)
        assert got == ["hello"]
    finally:
        log.close()


# --- recordings ---------------------------------------------------------------------------------


def _array(values: list[float]) -> dict:
    return {"layout": {"dim": [], "data_offset": 0}, "data": values}


def _record(step: int) -> dict:
    return {"data": StepRecord(step=step, episode=0, exit_used=1, max_exit=1, stop_reason="fixed", llm_gflops=1.0,
                               total_gflops=1.0).to_json()}


def _recording(path: Path, cameras_at: dict[int, tuple[str, ...]], without_instruction: int | None = None) -> Path:
    """Three steps as the policy node records them, step i with cameras ``cameras_at.get(i, (static, wrist))``;
    step ``without_instruction`` lacks its instruction."""
    log = McapLog(path)
    for i in range(3):
        for camera in cameras_at.get(i, ("static", "wrist")):
            log.write(image_topic(camera), "sensor_msgs/msg/Image", IMAGE, 1000 + i)
        if i != without_instruction:
            log.write(INSTRUCTION, "std_msgs/msg/String", {"data": "reach the goal"}, 1000 + i)
        log.write(ACTION, "std_msgs/msg/Float32MultiArray", _array([0.0] * 7), 1000 + i)
        log.write(RECORD, "std_msgs/msg/String", _record(i), 1000 + i)
    log.close()
    return path


def test_a_recorded_step_whose_instruction_was_lost_is_left_out(tmp_path: Path) -> None:
    """A step without its instruction was kept: a replay or calibration ran the policy on instruction None."""
    path = _recording(tmp_path / "r.mcap", {}, without_instruction=1)
    with pytest.warns(TruncatedMcapWarning, match=r"1 incomplete step\(s\) left out"):
        steps = read_recording(path)
    assert [s.record.step for s in steps] == [0, 2]
    assert all(s.instruction == "reach the goal" for s in steps)


def test_a_recorded_step_missing_one_camera_is_left_out(tmp_path: Path) -> None:
    """A step with fewer cameras than the others was kept: its replay raised KeyError, or a calibration scored it
    on one view."""
    path = _recording(tmp_path / "r.mcap", {1: ("static",)})
    with pytest.warns(TruncatedMcapWarning, match=r"step 1 at 1001 ns \(cameras \['static'\] of \['static', "
                                                  r"'wrist'\]\)"):
        steps = read_recording(path)
    assert [s.record.step for s in steps] == [0, 2]


# --- episode files ------------------------------------------------------------------------------


def test_the_episode_checksum_covers_the_executed_actions(tmp_path: Path) -> None:
    """The checksum left out actions_executed: a damaged executed-action array loaded as if whole."""
    meta = DatasetMeta(cameras=("static",), image_size=8, action_spec={"axes": ["x", "y", "z"]}, proprio_dim=0,
                       tasks=["t"])
    labels = np.zeros((3, 4), np.float32)
    ep = Episode(task="t", instruction="do it", seed=1, success=True,
                 images={"static": np.zeros((3, 8, 8, 3), np.uint8)}, proprio=None, actions=labels,
                 actions_executed=labels + 0.1)
    path = EpisodeWriter(tmp_path, meta).write(ep)
    read_episode(path, meta)  # whole: it reads
    with h5py.File(path, "r+") as f:
        f["actions_executed"][0, 0] = 0.9
    with pytest.raises(DatasetError, match="checksum"):
        read_episode(path, meta)
