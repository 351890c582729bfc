"""`deer-vla` run from a repository checkout warns when the installed package's sources differ from it."""
from __future__ import annotations

import shutil
from pathlib import Path

from deer_vla.commands.checkout import installed_package, stale_install


def _checkout(root: Path, tasks: str) -> Path:
    (root / "deer_vla" / "sim").mkdir(parents=True)
    (root / "package.xml").write_text("<package><name>deer_vla</name></package>")
    (root / "deer_vla" / "__init__.py").write_text("")
    (root / "deer_vla" / "sim" / "tasks.py").write_text(tasks)
    return root


def test_an_edited_checkout_names_the_files_the_installed_copy_lacks(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path / "repo", "TASKS = ('open the drawer', 'hey robot, open the drawer')\n")
    installed = tmp_path / "site-packages" / "deer_vla"
    shutil.copytree(checkout / "deer_vla", installed)
    assert stale_install(checkout, installed) is None  # the same sources: nothing to say
    (checkout / "deer_vla" / "sim" / "tasks.py").write_text("TASKS = ('open the drawer',)\n")
    (checkout / "deer_vla" / "new_module.py").write_text("X = 1\n")
    warning = stale_install(checkout, installed)
    assert warning is not None and "deer_vla/sim/tasks.py" in warning and "deer_vla/new_module.py" in warning
    assert "scripts/install.sh" in warning


def test_no_warning_outside_a_checkout_or_when_running_the_checkout_itself(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path / "repo", "X = 1\n")
    other = tmp_path / "site-packages" / "deer_vla"
    other.mkdir(parents=True)
    assert stale_install(tmp_path, other) is None  # no package.xml here: not a checkout
    assert stale_install(checkout, checkout / "deer_vla") is None  # PYTHONPATH=. runs the sources themselves


def test_the_installed_package_is_the_folder_this_code_came_from() -> None:
    import deer_vla

    assert installed_package() == Path(deer_vla.__file__).resolve().parent


def test_a_fifo_named_like_a_source_does_not_block_the_check(tmp_path: Path) -> None:
    """Every command compares the checkout it runs in with the installed copy: a FIFO named deer_vla/cli.py in
    the working directory made `deer-vla eval-report` block, before any output, until killed."""
    import os
    import threading

    checkout = _checkout(tmp_path / "repo", "X = 1\n")
    installed = tmp_path / "site-packages" / "deer_vla"
    shutil.copytree(checkout / "deer_vla", installed)
    (installed / "cli.py").write_text("")
    os.mkfifo(checkout / "deer_vla" / "cli.py")
    result: list[str | None] = []
    worker = threading.Thread(target=lambda: result.append(stale_install(checkout, installed)), daemon=True)
    worker.start()
    worker.join(10.0)
    assert result == [None], "stale_install blocked on a FIFO"


def test_an_edited_config_and_a_command_run_from_a_subfolder_are_noticed(tmp_path: Path) -> None:
    """`episodes: 1` in config/sim.yaml went unnoticed (the demo ran the installed share/deer_vla/config), and so
    did any edit when the command ran from deer_vla/ rather than the checkout's root."""
    checkout = _checkout(tmp_path / "repo", "X = 1\n")
    (checkout / "config").mkdir()
    (checkout / "config" / "sim.yaml").write_text("episodes: 5\n")
    installed = tmp_path / "prefix" / "site-packages" / "deer_vla"
    shutil.copytree(checkout / "deer_vla", installed)
    share = tmp_path / "prefix" / "share" / "deer_vla"
    (share / "config").mkdir(parents=True)
    shutil.copy(checkout / "package.xml", share / "package.xml")
    shutil.copy(checkout / "config" / "sim.yaml", share / "config" / "sim.yaml")
    assert stale_install(checkout, installed, share=share) is None
    (checkout / "config" / "sim.yaml").write_text("episodes: 1\n")
    warning = stale_install(checkout, installed, share=share)
    assert warning is not None and "config/sim.yaml" in warning
    (checkout / "deer_vla" / "sim" / "tasks.py").write_text("X = 2\n")
    warning = stale_install(checkout / "deer_vla" / "sim", installed, share=share)  # run from a subfolder
    assert warning is not None and "deer_vla/sim/tasks.py" in warning
