"""MetaWorldAdapter: cameras, action mapping, seeds, expert, errors (headless MuJoCo)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from deer_vla.core.action_spec import ActionSpec

mw = pytest.importorskip("deer_vla.sim.metaworld_env")


@pytest.fixture(scope="module")
def adapter() -> Iterator[mw.MetaWorldAdapter]:
    a = mw.MetaWorldAdapter("coffee-button", image_size=32, seed=5)
    yield a
    a.close()


def test_renders_both_cameras(adapter: mw.MetaWorldAdapter) -> None:
    obs = adapter.reset(seed=5)
    obs.validate(("static", "wrist"))
    for cam in ("static", "wrist"):
        img = obs.images[cam]
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        assert img.std() > 5.0, f"{cam} image is nearly constant"
    assert not np.array_equal(obs.images["static"], obs.images["wrist"])
    assert obs.proprio is not None and obs.proprio.shape == (mw.PROPRIO_DIM,) and obs.proprio.dtype == np.float32
    assert obs.instruction == adapter.task.instruction
    assert adapter.render_ms_per_frame > 0


def test_action_spec_is_metaworld_layout(adapter: mw.MetaWorldAdapter) -> None:
    assert adapter.action_spec == ActionSpec(axes=("x", "y", "z"), scale=(0.01, 0.01, 0.01))
    assert adapter.action_spec.dim == 4


def test_plus_x_moves_hand_plus_x(adapter: mw.MetaWorldAdapter) -> None:
    start = adapter.reset(seed=5).proprio.copy()
    for _ in range(6):
        res = adapter.step(np.array([1.0, 0.0, 0.0, -1.0]))
    delta = res.observation.proprio[:3] - start[:3]
    assert delta[0] > 0.02, delta  # about 1 cm per step once the mocap weld catches up
    assert abs(delta[1]) < 0.5 * delta[0] and abs(delta[2]) < 0.5 * delta[0]


def test_seven_d_action_drops_rotation_and_matches_four_d(adapter: mw.MetaWorldAdapter) -> None:
    a4 = np.array([0.3, -0.5, 0.2, 1.0])
    a7 = np.array([0.3, -0.5, 0.2, 0.9, -0.9, 0.4, 1.0])
    np.testing.assert_allclose(adapter.to_env_action(a7), a4)
    np.testing.assert_allclose(adapter.to_env_action([5.0, -5.0, 0.0, 2.0]), [1.0, -1.0, 0.0, 1.0])  # clipped
    adapter.reset(seed=9)
    r4 = [adapter.step(a4).observation.proprio for _ in range(3)][-1]
    adapter.reset(seed=9)
    r7 = [adapter.step(a7).observation.proprio for _ in range(3)][-1]
    np.testing.assert_allclose(r4, r7, atol=1e-9)


def test_bad_actions_rejected(adapter: mw.MetaWorldAdapter) -> None:
    adapter.reset(seed=1)
    with pytest.raises(ValueError, match="NaN"):
        adapter.step([np.nan, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        adapter.step([0.0, 0.0, 0.0, 0.0, 0.0, np.inf, 0.0])
    with pytest.raises(ValueError, match="4-D .* or 7-D"):
        adapter.step([0.0, 0.0, 0.0])


def test_seeds_are_deterministic_and_vary_the_scene(adapter: mw.MetaWorldAdapter) -> None:
    a = adapter.reset(seed=11)
    b = adapter.reset(seed=11)
    c = adapter.reset(seed=12)
    np.testing.assert_array_equal(a.images["static"], b.images["static"])
    np.testing.assert_array_equal(a.proprio, b.proprio)
    assert not np.array_equal(a.images["static"], c.images["static"]), "another seed should move the object"
    # reset() without a seed continues from the last one
    adapter.reset(seed=20)
    assert adapter.reset().extras["seed"] == 21


def test_expert_succeeds_and_episode_ends(adapter: mw.MetaWorldAdapter) -> None:
    adapter.reset(seed=3, instruction="push the coffee machine button")
    assert adapter.instruction == "push the coffee machine button"
    for _ in range(adapter.max_steps):
        res = adapter.step(adapter.expert_action())
        if res.done:
            break
    assert res.success and res.done and res.info["steps"] < adapter.max_steps
    with pytest.raises(RuntimeError, match="episode is over"):
        adapter.step([0.0, 0.0, 0.0, 0.0])


def test_episode_times_out_at_max_steps() -> None:
    with mw.MetaWorldAdapter("drawer-open", image_size=16, cameras=("wrist",), max_steps=3) as a:
        a.reset(seed=0)
        results = [a.step([0.0, 0.0, 0.0, 0.0]) for _ in range(3)]
        assert [r.done for r in results] == [False, False, True] and not results[-1].success


def test_bad_configuration_errors() -> None:
    with pytest.raises(KeyError, match="known tasks"):
        mw.MetaWorldAdapter("fly-to-mars")
    with pytest.raises(ValueError, match="image_size"):
        mw.MetaWorldAdapter("drawer-open", image_size=8)
    with pytest.raises(ValueError, match="unknown camera 'belly'"):
        mw.MetaWorldAdapter("drawer-open", cameras=("belly",))
    with pytest.raises(ValueError, match="max_steps"):
        mw.MetaWorldAdapter("drawer-open", max_steps=0)
    with mw.MetaWorldAdapter("drawer-open", image_size=16, cameras=("topview",)) as a:
        with pytest.raises(RuntimeError, match="reset"):
            a.step([0.0, 0.0, 0.0, 0.0])
        with pytest.raises(ValueError, match="seed"):
            a.reset(seed=-1)
        with pytest.raises(ValueError, match="instruction"):
            a.reset(instruction="  ")


def test_state_only_adapter_renders_nothing() -> None:
    with mw.MetaWorldAdapter("handle-press", cameras=()) as a:
        obs = a.reset(seed=2)
        assert obs.images == {} and obs.proprio.shape == (4,)
        a.step(a.expert_action())
        assert a.render_ms_per_frame == 0.0
