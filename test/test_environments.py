"""The environments a robot's computer really runs in: an ASCII locale, no home folder, a service user."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], env_changes: dict[str, str | None], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", "0"))
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=120)


ASCII_LOCALE: dict[str, str | None] = {"LC_ALL": "C", "LANG": None, "PYTHONUTF8": "0"}


def test_an_argument_that_is_not_text_in_this_locale_is_refused_in_one_line(tmp_path: Path) -> None:
    """Under LC_ALL=C with UTF-8 mode off, 'é' arrives as surrogate escapes: bringup and the demo ended in a
    traceback ('surrogates not allowed') from rcl, a node the same."""
    for args in (["-m", "deer_vla.cli", "bringup", "checkpoint:=/tmp/caf\u00e9"],
                 ["-m", "deer_vla.ros.monitor_node", "--ros-args", "-p", "log_dir:=caf\u00e9"]):
        done = _run(args, ASCII_LOCALE, tmp_path)
        assert done.returncode == 2, done.stderr
        assert "is not UTF-8 text (file system encoding ascii): run with PYTHONUTF8=1" in done.stderr
        assert "Traceback" not in done.stderr
    # a command that only opens the file still takes its name (the bytes name the file in any locale)
    folder = tmp_path / "caf\u00e9"
    folder.mkdir()
    done = _run(["-m", "deer_vla.cli", "profile", "--checkpoint", str(folder)], ASCII_LOCALE, tmp_path)
    assert done.returncode == 2 and "not UTF-8 text" not in done.stderr and "Traceback" not in done.stderr
    assert "config.json" in done.stderr, done.stderr  # it looked into the folder: not a checkpoint


def test_yaml_files_are_read_as_utf8_in_any_locale(tmp_path: Path) -> None:
    """A training config with '# entraînement' in a comment was 'not valid YAML: ascii codec can't decode'."""
    config = tmp_path / "train.yaml"
    config.write_text("# entra\u00eenement\nnote: caf\u00e9\n", encoding="utf-8")
    code = ("import json, sys; from deer_vla.core.config_io import read_yaml_mapping; "
            f"print(json.dumps(read_yaml_mapping({str(config)!r}, 'training config')))")
    done = _run(["-c", code], ASCII_LOCALE, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"note": "caf\u00e9"}


def test_ros_without_a_home_folder_says_the_way_out(tmp_path: Path) -> None:
    """A service account or a container user with no HOME: rcl's logging fails to start, and the error named
    neither ROS_LOG_DIR nor the option that turns rcl's file logging off."""
    done = _run(["-m", "deer_vla.cli", "demo", "--episodes", "1", "--max-steps", "2", "--output-dir",
                 str(tmp_path / "out")], {"HOME": None, "ROS_LOG_DIR": None, "ROS_HOME": None}, tmp_path)
    assert done.returncode != 0
    assert "ROS 2 could not start" in done.stderr
    assert "set ROS_LOG_DIR to a writable folder (or HOME), or add --ros-args --disable-external-lib-logs" \
        in done.stderr


def test_the_importers_next_command_runs_as_printed_from_any_folder(tmp_path: Path, monkeypatch) -> None:
    """It printed 'config/train_own_robot.yaml' (only there in the source tree's root) and an unquoted path:
    pasted, a dataset folder with a space was two arguments."""
    from deer_vla.data.importing import next_train_command

    out = tmp_path / "my data \u00e9"
    words = shlex.split(next_train_command(out))
    assert words[:3] == ["deer-vla", "train", "--config"] and words[4] == "--set"
    assert Path(words[3]).is_absolute() and Path(words[3]).is_file()
    assert words[5] == f"dataset={out}"
    # a config folder of its own, relative, holding the node parameters only: the package's recipe
    (tmp_path / "myconf").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEER_VLA_CONFIG_DIR", "myconf")
    assert shlex.split(next_train_command(out))[3] == words[3]
    (tmp_path / "myconf" / "train_own_robot.yaml").write_text("{}\n")
    assert shlex.split(next_train_command(out))[3] == str(tmp_path / "myconf" / "train_own_robot.yaml")


def test_an_imported_instruction_that_is_not_text_is_refused_in_one_line(tmp_path: Path) -> None:
    """`import-mcap --instruction 'öffne'` under an ASCII locale (UTF-8 mode off) ended in a ValueError
    traceback: the instruction's check raised outside the errors the command reports."""
    (tmp_path / "x.mcap").write_bytes(b"")
    done = _run(["-m", "deer_vla.cli", "import-mcap", "x.mcap", "--out", "o", "--image-topic", "/cam",
                 "--action-topic", "/cmd", "--instruction", "\u00f6ffne", "--rate", "10"], ASCII_LOCALE, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "--instruction: instruction is not valid text" in done.stderr and "Traceback" not in done.stderr
