"""What sandboxed code uses over time: sampled while it runs, logged as MLflow `system/` metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from llmseg_mlflow.pipeline import sandbox
from llmseg_mlflow.pipeline.usage_sampler import PREFIX, Sample, UsageSampler, as_metrics

# Half a second of idle memory, then a busy second and a half holding 200 MB.
BUSY = """
import time
time.sleep(0.5)
block = bytearray(200 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.monotonic() + 1.5
while time.monotonic() < end:
    pass
"""


@pytest.mark.skipif(sandbox.bwrap_path() is None, reason="needs bubblewrap")
def test_a_sandboxed_run_is_sampled_while_it_runs(tmp_path):
    work = tmp_path / "attempt"
    work.mkdir()
    (work / "main.py").write_text(textwrap.dedent(BUSY))
    result = sandbox.run(
        [sys.executable, "main.py"],
        sandbox.Mounts(work),
        sandbox.Limits(timeout_s=60),
        log_dir=tmp_path / "logs",
        sample_usage_s=0.25,
    )
    assert result.ok, result.stderr_text()
    assert len(result.usage) >= 4
    times = [s.time_ms for s in result.usage]
    assert times == sorted(times) and times[-1] - times[0] >= 1000
    cpu = [s.values["cpu_utilization_percentage"] for s in result.usage]
    memory = [s.values["system_memory_usage_megabytes"] for s in result.usage]
    one_core = 100 / len(os.sched_getaffinity(0))
    assert max(cpu) > 0.5 * one_core and all(0 <= c <= 100.5 for c in cpu)  # a share of all the CPUs
    assert max(memory) > 200 and min(memory) < 150  # the 200 MB block came and was seen
    assert 0 < max(s.values["system_memory_usage_percentage"] for s in result.usage) < 100


def test_without_a_request_nothing_is_sampled(tmp_path):
    work = tmp_path / "attempt"
    work.mkdir()
    result = sandbox.run(
        [sys.executable, "-c", "pass"],
        sandbox.Mounts(work),
        sandbox.Limits(60),
        log_dir=tmp_path / "l",
        unsafe_no_sandbox=True,
    )
    assert result.ok and result.usage == []


def test_samples_become_system_metrics_by_index_and_time():
    samples = [
        Sample(1000, {"cpu_utilization_percentage": 50.0, "gpu_0_utilization_percentage": 10.0}),
        Sample(3000, {"cpu_utilization_percentage": 25.0}),
    ]
    metrics = as_metrics(samples)
    assert [(m.key, m.value, m.timestamp, m.step) for m in metrics] == [
        (PREFIX + "cpu_utilization_percentage", 50.0, 1000, 0),
        (PREFIX + "gpu_0_utilization_percentage", 10.0, 1000, 0),
        (PREFIX + "cpu_utilization_percentage", 25.0, 3000, 1),
    ]
    assert PREFIX == "system/"  # the prefix of MLflow's own monitor: the UI's "System metrics" tab


def test_gpus_are_read_through_nvml_where_it_is_installed(monkeypatch):
    """This machine has no GPU: NVML's few calls answered as a driver would, to pin the keys MLflow's UI charts."""
    calls: list[str] = []
    nvml = SimpleNamespace(
        nvmlInit=lambda: calls.append("init"),
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=(h + 1) * 10**9, total=80 * 10**9),
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=50 + h),
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    proc = subprocess.Popen(["sleep", "1"])
    sampler = UsageSampler(0.2).start(proc.pid)
    proc.wait()
    samples = sampler.stop()
    assert samples, "no sample taken"
    values = samples[0].values
    assert values["gpu_0_utilization_percentage"] == 50 and values["gpu_1_utilization_percentage"] == 51
    assert values["gpu_1_memory_usage_megabytes"] == 2000 and values["gpu_0_memory_usage_percentage"] == 1.2
    assert calls[0] == "init" and calls[-1] == "shutdown"
