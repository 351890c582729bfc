"""The reference docs name what the code has: docs/cli.md every flag of every `deer-vla` command (an audit found
33 flags no document named), bench/README.md every bench script."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _reference_script():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_names_every_flag_of_every_command() -> None:
    script = _reference_script()
    helps = {name: script.command_help(name) for name in script.COMMANDS}
    markdown = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert set(script.sections(markdown)) == set(script.COMMANDS)
    # (after adding a flag: python scripts/cli_reference.py)
    assert script.missing_flags(helps, markdown) == {}


def test_a_flag_missing_from_its_commands_section_is_found() -> None:
    script = _reference_script()
    helps = {"replay": "usage: deer-vla replay [--peak-ms MS] [--average-gflops G]"}
    markdown = "## `deer-vla replay`\n\n--average-gflops\n\n## `deer-vla demo`\n\n--peak-ms\n"
    assert script.missing_flags(helps, markdown) == {"replay": ["--peak-ms"]}  # named only in another's section


def test_bench_readme_has_a_row_for_every_bench_script() -> None:
    """README.md says bench/README.md lists every script; bench_refusal_classifier.py had no row (an audit's)."""
    scripts = {p.name for p in (ROOT / "bench").glob("bench_*.py")}
    rows = (ROOT / "bench" / "README.md").read_text(encoding="utf-8")
    assert scripts and {s for s in scripts if f"| `{s}` |" not in rows} == set()
