"""A pip install is usable by `ros2 launch` (issue 15, defect 1).

deer_vla is pip-installed into a fresh venv in tmp (its dependencies come
from the dev venv through a .pth), then the environment hooks of
scripts/install.sh are written, and the test does what launch_ros does:
find the package prefix with ament_index_python, then the executable in
<prefix>/lib/deer_vla, and starts it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]
NODE_EXECUTABLES = ("policy_node", "monitor_node", "sim_node", "bringup")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("venv") / "v"
    venv.create(prefix, with_pip=False)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    dev_site = sysconfig.get_path("purelib")
    (site / "dev_deps.pth").write_text(f"import site; site.addsitedir({dev_site!r})\n")
    # a module an earlier build left in pip's in-tree build/lib (since moved or removed in the source): it must not
    # be installed (test_the_install_holds_exactly_the_source_trees_modules); a fresh checkout has no build/ at all
    stale = ROOT / "build" / "lib" / "deer_vla" / "stale_module_of_an_earlier_build.py"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("")
    # --ignore-installed: without it pip first uninstalls the dev venv's own copy of deer_vla
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--ignore-installed", "--prefix", str(prefix), str(ROOT)],
                   check=True, capture_output=True)
    # the post-install step of scripts/install.sh
    subprocess.run([str(prefix / "bin" / "python"), "-m", "deer_vla.ament_hooks"], check=True, capture_output=True)
    return prefix


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH")}
    env.update(extra)
    return env


# what launch_ros's ExecutableInPackage does (launch_ros/substitutions/executable_in_package.py); its
# osrf_pycommon which() has shutil.which's rules (an executable file on the given path)
FIND_EXECUTABLE = """
import os, sys
from shutil import which
from ament_index_python.packages import get_package_prefix, get_package_share_directory
prefix = get_package_prefix("deer_vla")
print(prefix)
print(get_package_share_directory("deer_vla"))
for exe in sys.argv[1:]:
    print(which(exe, path=os.path.join(prefix, "lib", "deer_vla")))
"""


def _find(python: str, env: dict[str, str], cwd: Path) -> list[str]:
    out = subprocess.run([python, "-c", FIND_EXECUTABLE, *NODE_EXECUTABLES], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_launch_ros_finds_the_executables_of_a_pip_install_in_a_venv(installed, tmp_path):
    # in the venv, without activating it or exporting anything (the .pth hook)
    found = _find(str(installed / "bin" / "python"), _env(), tmp_path)
    assert Path(found[0]).resolve() == installed.resolve()
    assert Path(found[1]) == Path(found[0]) / "share" / "deer_vla"
    assert (Path(found[1]) / "launch" / "sim.launch.py").is_file()
    for exe, path in zip(NODE_EXECUTABLES, found[2:]):
        assert path != "None", f"{exe} not found in {found[0]}/lib/deer_vla"
        assert Path(path).is_file() and os.access(path, os.X_OK)


def test_the_documented_environment_works_for_another_python(installed, tmp_path):
    """apt ROS + pip: `ros2` runs /usr/bin/python3, not the venv's; sourcing local_setup.sh (or the venv's
    activate) exports AMENT_PREFIX_PATH and PYTHONPATH so it finds the package and can read the launch files."""
    setup = installed / "share" / "deer_vla" / "local_setup.sh"
    assert setup.is_file() and str(setup) in (installed / "bin" / "activate").read_text()
    for source in (setup, installed / "bin" / "activate"):
        # a Python that is not the venv's (here: the dev venv's, whose deer_vla copy must not be the one used)
        script = (f'. "{source}" && exec "{sys.executable}" -c '
                  '"import deer_vla.ros.launch_support as m; print(m.__file__)"')
        out = subprocess.run(["bash", "-c", script], env=_env(), cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().startswith(str(installed)), out.stdout
        found = _find(sys.executable, _env(**_sourced(source, tmp_path)), tmp_path)
        assert Path(found[0]).resolve() == installed.resolve()


def _sourced(script: Path, cwd: Path) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", f'. "{script}" && . "{script}" && env -0'], env=_env(), cwd=cwd,
                         capture_output=True, text=True, timeout=30, check=True)
    env = dict(item.split("=", 1) for item in out.stdout.split("\0") if "=" in item)
    assert env["AMENT_PREFIX_PATH"].split(os.pathsep).count(str(installed_root(script))) == 1  # idempotent
    return {k: env[k] for k in ("AMENT_PREFIX_PATH", "PYTHONPATH")}


def installed_root(script: Path) -> Path:
    return script.parents[2] if script.name == "local_setup.sh" else script.parents[1]


def test_the_installed_node_executables_start_and_stop_cleanly(installed, tmp_path):
    libexec = installed / "lib" / "deer_vla"
    env = _env(PYTHONUNBUFFERED="1", ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", "0"))
    logs = {name: tmp_path / f"{name}.log" for name in ("policy_node", "monitor_node")}
    procs = {
        "policy_node": subprocess.Popen([str(libexec / "policy_node"), "--ros-args", "-p", "autostart:=true",
                                         "-p", f"checkpoint_dir:={tmp_path / 'none'}"],
                                        stdout=logs["policy_node"].open("w"), stderr=subprocess.STDOUT, env=env,
                                        cwd=tmp_path),
        "monitor_node": subprocess.Popen([str(libexec / "monitor_node"), "--ros-args", "-p",
                                          f"log_dir:={tmp_path}", "-p", "run_name:=inst"],
                                         stdout=logs["monitor_node"].open("w"), stderr=subprocess.STDOUT, env=env,
                                         cwd=tmp_path),
    }
    ready = {"policy_node": "configure failed", "monitor_node": "monitor logging to"}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(ready[n] in logs[n].read_text() for n in procs):
            assert all(p.poll() is None for p in procs.values()), {n: logs[n].read_text() for n in procs}
            time.sleep(0.2)
        for name, proc in procs.items():
            assert ready[name] in logs[name].read_text(), logs[name].read_text()
            proc.send_signal(signal.SIGINT)
        # the policy's autostart failed (no checkpoint there): it stays up, then exits 1, not as if it had worked
        expected = {"policy_node": 1, "monitor_node": 0}
        for name, proc in procs.items():
            assert proc.wait(timeout=30) == expected[name], logs[name].read_text()
        assert "Traceback" not in logs["policy_node"].read_text()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert (tmp_path / "inst" / "summary.json").is_file()
    # the sim's launcher reaches the sim's own parameter validation; bringup's its argument parser
    out = subprocess.run([str(libexec / "sim_node"), "--ros-args", "-p", "episodes:=0"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "'episodes' must be >= 1" in out.stderr
    out = subprocess.run([str(libexec / "bringup"), "--help"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "NAME:=VALUE" in out.stdout, out.stderr
    assert shutil.which("python3", path=str(installed / "bin"))  # the launchers' own-prefix Python was used


def test_the_install_holds_exactly_the_source_trees_modules(installed, tmp_path):
    """A module removed or moved in the source is gone from the next install: setuptools' build/lib kept
    every earlier build's files, and an install shipped them (stale train/calibrate.py, ros/mcap_io.py)."""
    code = "import deer_vla, pathlib; print(pathlib.Path(deer_vla.__file__).parent)"
    out = subprocess.run([str(installed / "bin" / "python"), "-c", code], env=_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    package = Path(out.stdout.strip())
    assert package.resolve().is_relative_to(installed.resolve()), package
    source = ROOT / "deer_vla"
    assert ({p.relative_to(package) for p in package.rglob("*.py")}
            == {p.relative_to(source) for p in source.rglob("*.py")})


def test_the_install_ships_every_shipped_checkpoint_byte_for_byte(installed, tmp_path):
    """`--checkpoint mt50` in an install resolves inside the installed package, to the same files the source tree
    ships (package_data covers every assets/<name>_checkpoint file; a stale or partial copy would load other
    weights or fail at configure)."""
    import filecmp

    from deer_vla.model.shipped import shipped_checkpoints

    code = ("import json, deer_vla.model.shipped as s; "
            "print(json.dumps({n: str(p) for n, p in s.shipped_checkpoints().items()}))")
    out = subprocess.run([str(installed / "bin" / "python"), "-c", code], env=_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    found = {name: Path(path) for name, path in json.loads(out.stdout).items()}
    source = shipped_checkpoints()
    assert set(found) == set(source) and {"default", "mt50"} <= set(found)
    for name, folder in found.items():
        assert folder.resolve().is_relative_to(installed.resolve()), folder
        files = sorted(p.name for p in source[name].iterdir() if p.is_file())
        assert sorted(p.name for p in folder.iterdir() if p.is_file()) == files, name
        _, mismatch, errors = filecmp.cmpfiles(source[name], folder, files, shallow=False)
        assert not mismatch and not errors, (name, mismatch, errors)


def test_the_install_ships_every_config_file_and_the_large_image_dds_profile_holds_a_1080p_frame(installed):
    """The launch files' parameter files and the Fast DDS profile docs/ros.md tells a 1080p robot to export land in
    share/deer_vla/config; the profile makes a shared-memory transport whose segments hold a 1920x1080 rgb8 frame
    (the built-in one lost most such frames: 11.5 of 30 per second arrived) and keeps UDP for other computers."""
    import xml.etree.ElementTree as ET

    shipped = sorted(p.name for p in (ROOT / "config").iterdir() if p.suffix in (".yaml", ".xml"))
    assert sorted(p.name for p in (installed / "share" / "deer_vla" / "config").iterdir()) == shipped
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ET.parse(installed / "share" / "deer_vla" / "config" / "fastdds_large_images.xml").getroot()
    kinds = {d.findtext("f:transport_id", namespaces=ns): (d.findtext("f:type", namespaces=ns),
                                                          d.findtext("f:segment_size", namespaces=ns))
             for d in root.iterfind("f:transport_descriptors/f:transport_descriptor", ns)}
    participant = root.find("f:participant", ns)
    assert participant is not None and participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind("f:rtps/f:userTransports/f:transport_id", ns)]
    assert sorted(kinds[t][0] for t in used) == ["SHM", "UDPv4"]
    assert all(int(kinds[t][1]) >= 2 * 1920 * 1080 * 3 for t in used if kinds[t][0] == "SHM")
    assert participant.findtext("f:rtps/f:useBuiltinTransports", namespaces=ns) == "false"


def test_install_refuses_a_python_other_than_3_11_before_touching_anything(tmp_path):
    """With another Python the only errors were pip's, deep in the requirements (3.10), or none at all (3.12: a
    6 GB venv of other builds); and the wrong venv was then reused by every later run."""
    fake = tmp_path / "python3"
    fake.write_text('#!/bin/sh\n[ "$1" = "--version" ] && { echo "Python 3.12.1"; exit 0; }\nexit 1\n')
    fake.chmod(0o755)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh")], env={**os.environ, "PYTHON": str(fake)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "deer_vla needs Python 3.11 here" in proc.stderr and "Python 3.12.1" in proc.stderr
    assert "pip install" not in proc.stdout
    # a robot whose ROS 2 comes from apt runs its system Python (3.12 for Jazzy on Ubuntu 24.04): 3.10-3.12 pass
    # the gate there; older ones are refused the same way
    fake.write_text('#!/bin/sh\n[ "$1" = "--version" ] && { echo "Python 3.9.1"; exit 0; }\necho 3.9\n')
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh")],
                          env={**os.environ, "PYTHON": str(fake), "DEER_VLA_NO_ROS_WHEELS": "1"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "needs Python 3.10 or 3.11 or 3.12 here" in proc.stderr


@pytest.mark.parametrize("before", [None, "/opt/elsewhere"])
def test_deactivate_puts_back_what_activate_exported(installed, tmp_path, before):
    """The activate hook exports AMENT_PREFIX_PATH and PYTHONPATH (for an apt `ros2`); `deactivate` must put both
    back as it puts back PATH, or another Python used afterwards still imports this venv's packages. Activating
    twice (the venv's activate first deactivates the live one) changes nothing about that."""
    activate = installed / "bin" / "activate"
    show = 'echo "A=${AMENT_PREFIX_PATH-<unset>} P=${PYTHONPATH-<unset>}"'
    script = "\n".join([f'. "{activate}"', show, f'. "{activate}"', show, "deactivate", show,
                        'declare -F deactivate >/dev/null && echo "still defined" || echo gone',
                        'declare -F _deer_vla_venv_deactivate >/dev/null && echo "copy left" || echo "no copy"'])
    env = _env() if before is None else _env(AMENT_PREFIX_PATH=before, PYTHONPATH=before)
    out = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    site = sysconfig.get_path("purelib", vars={"base": str(installed), "platbase": str(installed)})
    assert str(installed) in lines[0] and site in lines[0] and lines[0] == lines[1]  # active, sourced once
    expected = "<unset>" if before is None else before
    assert lines[2] == f"A={expected} P={expected}"
    assert lines[3:] == ["gone", "no copy"]


@pytest.mark.parametrize("executable", ["policy_node", "monitor_node", "sim_node", "bringup"])
def test_a_launcher_started_in_a_checkout_does_not_run_that_source(tmp_path, executable):
    """`python3 -c` puts the current directory first on sys.path (so does an empty PYTHONPATH entry, as `export
    PYTHONPATH=$PYTHONPATH:/x` leaves one): a launcher started from a checkout's root ran that checkout's
    deer_vla, not the installed one, and said nothing (a newcomer's audit: an edited log line showed up). Run as
    installed (<prefix>/lib/deer_vla/<name> beside <prefix>/bin/python3, this test's Python) from a folder
    holding a package named deer_vla, it runs the installed package's --help."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    python = prefix / "bin" / "python3"  # (a wrapper, not a link: a link outside the venv loses its packages)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (prefix / "lib" / "deer_vla").mkdir(parents=True)
    launcher = prefix / "lib" / "deer_vla" / executable
    shutil.copy(ROOT / "libexec" / executable, launcher)
    shadow = tmp_path / "checkout" / "deer_vla"
    (shadow / "ros").mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('SHADOWED: the current directory was imported')\n")
    (shadow / "ros" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": ":/nonexistent"}  # (an empty entry: the current directory)
    out = subprocess.run(["sh", str(launcher), "--help"], cwd=tmp_path / "checkout", capture_output=True, text=True,
                         timeout=120, env=env)
    assert "SHADOWED" not in out.stdout + out.stderr
    assert out.returncode == 0 and "usage" in out.stdout.lower(), (out.returncode, out.stdout[-500:], out.stderr[-500:])
