"""What a sandboxed run uses over time (CPU, memory, the machine's GPUs), sampled in a background thread.

The `kind=training` run is created after the code has run (only then is it known which attempt trained),
so MLflow's own SystemMetricsMonitor, which watches a live run, cannot record it: this keeps the series
and `as_metrics` turns it into the `system/` metrics MLflow's UI shows in a run's "System metrics" tab.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from mlflow.entities import Metric

from llmseg_mlflow.pipeline.cgroups import Cgroup

PREFIX = "system/"  # MLflow's SystemMetricsMonitor prefix: the UI's "System metrics" tab lists these keys
INTERVAL_S = 2.0
MAX_SAMPLES = 2000  # past this the series is thinned to every other sample and the interval doubled


@dataclass(frozen=True)
class Sample:
    """One reading: when (ms since the epoch) and each value by its MLflow system metric name (no prefix)."""

    time_ms: int
    values: dict[str, float]


def _gpus() -> tuple[Any, list[Any]] | None:
    """(pynvml, device handles) when nvidia-ml-py is installed and a driver answers, else None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # noqa: BLE001 - no package, no driver, no device: the series simply has no GPU keys
        return None


class UsageSampler:
    """Samples one process tree (or its cgroup's processes) every `interval_s` seconds until stopped."""

    def __init__(self, interval_s: float = INTERVAL_S, max_samples: int = MAX_SAMPLES) -> None:
        self.interval_s, self.max_samples = interval_s, max_samples
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_s: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds at the last sample
        self._cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self._total = psutil.virtual_memory().total

    def start(self, pid: int, cgroup: Cgroup | None = None) -> UsageSampler:
        """Start sampling the process `pid` and its descendants (the cgroup's processes where there is one)."""

        def processes() -> list[psutil.Process]:
            found = []
            # the cgroup also holds what left the tree (a daemon re-parented outside it, unsandboxed)
            for p in cgroup.pids() if cgroup is not None else [pid]:
                try:
                    found.append(psutil.Process(p))
                except psutil.Error:  # already ended
                    pass
            return found if cgroup is not None else [*found, *(c for r in found for c in r.children(recursive=True))]

        self._thread = threading.Thread(target=self._loop, args=(processes,), name="usage-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop sampling; the series so far."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.samples

    def _loop(self, processes: Callable[[], list[psutil.Process]]) -> None:
        gpus = _gpus()
        last = time.monotonic()
        wait = min(self.interval_s, 1.0)  # the first reading early: a short run still gets one
        try:
            while not self._stop.wait(wait):
                now, wait = time.monotonic(), self.interval_s
                try:
                    values = self._read(processes(), now - last, gpus)
                except psutil.Error:  # the tree's root ended between two readings
                    continue
                finally:
                    last = now
                self.samples.append(Sample(int(time.time() * 1000), values))
                if len(self.samples) >= self.max_samples:  # a long training: keep it bounded, evenly spread
                    self.samples = self.samples[::2]
                    self.interval_s *= 2
        finally:
            if gpus is not None:
                try:
                    gpus[0].nvmlShutdown()
                except Exception:  # noqa: BLE001 - the driver going away changes nothing logged
                    pass

    def _read(
        self, procs: list[psutil.Process], elapsed_s: float, gpus: tuple[Any, list[Any]] | None
    ) -> dict[str, float]:
        cpu_s: dict[tuple[int, float], float] = {}
        used, rss = 0.0, 0
        for proc in procs:
            try:
                with proc.oneshot():
                    times, key = proc.cpu_times(), (proc.pid, proc.create_time())
                    rss += proc.memory_info().rss
            except psutil.Error:  # ended while we looked
                continue
            cpu_s[key] = times.user + times.system
            used += max(0.0, cpu_s[key] - self._cpu_s.get(key, 0.0))  # a new process: all its time is new
        self._cpu_s = cpu_s
        values = {
            # as MLflow's own: a share of all the CPUs (here: those this harness may run on), 0-100
            "cpu_utilization_percentage": round(100 * used / max(elapsed_s, 1e-3) / self._cpus, 1),
            "system_memory_usage_megabytes": rss / 1e6,
            "system_memory_usage_percentage": round(100 * rss / self._total, 2),
        }
        if gpus is not None:
            nvml, handles = gpus
            for i, handle in enumerate(handles):
                try:
                    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                    values[f"gpu_{i}_utilization_percentage"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                    values[f"gpu_{i}_memory_usage_megabytes"] = memory.used / 1e6
                    values[f"gpu_{i}_memory_usage_percentage"] = round(100 * memory.used / memory.total, 1)
                except Exception:  # noqa: BLE001 - one device's reading failing leaves the others
                    continue
        return values


def as_metrics(samples: list[Sample]) -> list[Metric]:
    """The series as MLflow metrics `system/<name>`, step = sample index, timestamp = the sample's time."""
    return [
        Metric(PREFIX + key, float(value), sample.time_ms, step)
        for step, sample in enumerate(samples)
        for key, value in sample.values.items()
    ]
