"""Energy meters for the benchmarks: NVML on NVIDIA GPUs, RAPL on CPUs, nothing invented.

A meter measures joules between ``start()`` and ``stop()``. Counters are
read by a background thread as well, so a counter that wraps around (RAPL's
energy_uj wraps at max_energy_range_uj, often within minutes) is never
missed between the two reads; NVML without a total-energy counter (older
GPUs) is integrated from power samples instead. ``detect_meters`` returns
the meters this machine really has; when there are none, the benchmarks
print NOT_AVAILABLE and no number.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

NOT_AVAILABLE = "energy: not available (no RAPL/NVML on this machine)"
RAPL_ROOT = Path("/sys/class/powercap")


class EnergyMeter(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> float:
        """Joules since start()."""
        ...


class _PollingMeter:
    """A background thread that calls ``_poll`` every ``poll_s`` between start() and stop().

    Subclasses define ``_begin`` (first reading), ``_poll`` (one reading) and
    ``_joules`` (the total once the thread has stopped and a last reading was taken).
    """

    def __init__(self, name: str, poll_s: float) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        self.name = name
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _begin(self) -> None:
        raise NotImplementedError

    def _poll(self) -> None:
        raise NotImplementedError

    def _joules(self) -> float:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self._poll()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} meter already started")
        self._stop.clear()
        self._begin()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-meter", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        if self._thread is None:
            raise RuntimeError(f"{self.name} meter was not started")
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._poll()
        return self._joules()


class _CounterMeter(_PollingMeter):
    """Joules from a monotone counter that may wrap, read at start/stop and every ``poll_s`` in between."""

    def __init__(self, name: str, read: Callable[[], list[float]], ranges: list[float], poll_s: float) -> None:
        super().__init__(name, poll_s)
        self._read = read  # joules per counter
        self._ranges = ranges  # wrap range per counter in joules (inf: never wraps)
        self._lock = threading.Lock()
        self._last: list[float] = []
        self._total = 0.0

    def _begin(self) -> None:
        self._last = self._read()
        self._total = 0.0

    def _poll(self) -> None:
        now = self._read()
        with self._lock:
            for i, (a, b) in enumerate(zip(self._last, now)):
                delta = b - a
                if delta < 0:  # wrapped once since the last read (reads are far apart from two wraps)
                    delta += self._ranges[i]
                self._total += delta
            self._last = now

    def _joules(self) -> float:
        return self._total


def rapl_domains(root: Path = RAPL_ROOT) -> list[Path]:
    """Top-level package domains (intel-rapl:N) whose counter is readable; sub-domains
    (intel-rapl:N:M, core/uncore/dram) are inside the package figure and would double count."""
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.glob("intel-rapl:*")):
        if d.name.count(":") != 1:
            continue
        try:
            int((d / "energy_uj").read_text())
            int((d / "max_energy_range_uj").read_text())
        except (OSError, ValueError):  # missing, or root-only since the PLATYPUS mitigation
            continue
        out.append(d)
    return out


def rapl_meter(root: Path = RAPL_ROOT, poll_s: float = 1.0) -> _CounterMeter | None:
    domains = rapl_domains(root)
    if not domains:
        return None
    ranges = [int((d / "max_energy_range_uj").read_text()) * 1e-6 for d in domains]
    read = lambda: [int((d / "energy_uj").read_text()) * 1e-6 for d in domains]
    names = ",".join((d / "name").read_text().strip() if (d / "name").is_file() else d.name for d in domains)
    return _CounterMeter(f"RAPL ({names})", read, ranges, poll_s)


class _PowerSamplingMeter(_PollingMeter):
    """Joules integrated (trapezoid) from power readings in watts every ``poll_s``."""

    def __init__(self, name: str, read_watts: Callable[[], float], poll_s: float = 0.01) -> None:
        super().__init__(name, poll_s)
        self._read = read_watts
        self._samples: list[tuple[float, float]] = []

    def _begin(self) -> None:
        self._samples = []
        self._poll()

    def _poll(self) -> None:
        self._samples.append((time.perf_counter(), self._read()))

    def _joules(self) -> float:
        s = self._samples
        return float(sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(s, s[1:])))


def nvml_meter(device_index: int = 0, poll_s: float = 0.5) -> EnergyMeter | None:
    """The GPU's total-energy counter (Volta and newer), else sampled power; None without NVML."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        gpu = pynvml.nvmlDeviceGetName(handle)
        gpu = gpu.decode() if isinstance(gpu, bytes) else gpu
    except pynvml.NVMLError:
        return None
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # millijoules since driver load
        read = lambda: [pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) * 1e-3]
        return _CounterMeter(f"NVML energy counter ({gpu})", read, [float("inf")], poll_s)
    except pynvml.NVMLError:
        pass
    try:
        pynvml.nvmlDeviceGetPowerUsage(handle)  # milliwatts
        watts = lambda: pynvml.nvmlDeviceGetPowerUsage(handle) * 1e-3
        return _PowerSamplingMeter(f"NVML power sampling ({gpu})", watts)
    except pynvml.NVMLError:
        return None


def detect_meters(device: str) -> list[EnergyMeter]:
    """Meters for a run on ``device`` ("cpu" or "cuda[:i]"): RAPL always if readable, NVML for CUDA."""
    meters: list[EnergyMeter] = []
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        gpu = nvml_meter(index)
        if gpu is not None:
            meters.append(gpu)
    cpu = rapl_meter()
    if cpu is not None:
        meters.append(cpu)
    return meters
