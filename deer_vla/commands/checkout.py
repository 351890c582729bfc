"""Is the ``deer-vla`` being run older than the repository checkout it is run from?

The package installs non-editable (launch files, config and the ament marker must land where ROS looks), so
``.venv/bin/deer-vla`` runs the installed copy, not the sources beside it. An edit to the task list followed by
``deer-vla train`` once trained a whole run on the old instructions without a word. This compares the two.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = "deer_vla"


def installed_package() -> Path:
    """The deer_vla directory this code was imported from."""
    return Path(__file__).resolve().parents[1]


def find_checkout(start: Path) -> Path | None:
    """The checkout of this package holding ``start`` (the directory with package.xml and deer_vla/), or None:
    a command run from deer_vla/ or docs/ of a checkout is run from it as much as from its root."""
    for folder in (start, *start.parents):
        if (folder / "package.xml").is_file() and (folder / PACKAGE / "__init__.py").is_file():
            return folder
    return None


def _pairs(checkout: Path, installed: Path, share: Path | None) -> list[tuple[Path, Path, str]]:
    """(checkout file, installed twin, name shown) for the package's Python files and, with the installed
    share/deer_vla folder, the config, launch files and package.xml the nodes and launch files read there."""
    source = checkout / PACKAGE
    pairs = [(path, installed / path.relative_to(source), f"{PACKAGE}/{path.relative_to(source).as_posix()}")
             for path in sorted(source.rglob("*.py"))]
    if share is not None and share.is_dir():
        data = [checkout / "package.xml", *sorted((checkout / "config").glob("*.yaml")),  # what setup.py installs
                *sorted((checkout / "launch").glob("*.py"))]
        pairs += [(path, share / path.relative_to(checkout), path.relative_to(checkout).as_posix()) for path in data]
    return pairs


def stale_install(checkout: Path, installed: Path, shown: int = 3, share: Path | None = None) -> str | None:
    """A warning naming the files that differ between ``checkout`` (a directory holding package.xml and
    deer_vla/, or one inside it) and the install: the ``installed`` package directory's Python files and, given
    ``share`` (<prefix>/share/deer_vla), its config, launch files and package.xml. None when they match, when
    ``checkout`` is not in a checkout of this package, or when the installed package *is* the checkout's."""
    root = find_checkout(checkout)
    if root is None:
        return None
    if (root / PACKAGE).resolve() == installed.resolve():
        return None
    differ = []
    for path, twin, name in _pairs(root, installed, share):
        if not path.is_file():  # a FIFO named like a source would block the read below, and every command
            continue
        try:
            same = twin.is_file() and twin.stat().st_size == path.stat().st_size \
                and twin.read_bytes() == path.read_bytes()
        except OSError:  # unreadable: not ours to judge
            continue
        if not same:
            differ.append(name)
    if not differ:
        return None
    more = f" and {len(differ) - shown} more" if len(differ) > shown else ""
    return (f"deer-vla: running the installed package ({installed}), but this checkout's sources differ in "
            f"{', '.join(differ[:shown])}{more}; run `bash scripts/install.sh` to use them")
