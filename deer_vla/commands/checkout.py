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


def stale_install(checkout: Path, installed: Path, shown: int = 3) -> str | None:
    """A warning naming the package's Python files that differ between ``checkout`` (a directory holding
    package.xml and deer_vla/) and the ``installed`` package directory; None when they match, when
    ``checkout`` is not a checkout of this package, or when the installed package *is* the checkout's."""
    source = checkout / PACKAGE
    if not (checkout / "package.xml").is_file() or not (source / "__init__.py").is_file():
        return None
    if source.resolve() == installed.resolve():
        return None
    differ = []
    for path in sorted(source.rglob("*.py")):
        if not path.is_file():  # a FIFO named like a source would block the read below, and every command
            continue
        rel = path.relative_to(source)
        twin = installed / rel
        try:
            same = twin.is_file() and twin.stat().st_size == path.stat().st_size \
                and twin.read_bytes() == path.read_bytes()
        except OSError:  # unreadable: not ours to judge
            continue
        if not same:
            differ.append(f"{PACKAGE}/{rel.as_posix()}")
    if not differ:
        return None
    more = f" and {len(differ) - shown} more" if len(differ) > shown else ""
    return (f"deer-vla: running the installed package ({installed}), but this checkout's sources differ in "
            f"{', '.join(differ[:shown])}{more}; run `bash scripts/install.sh` to use them")
