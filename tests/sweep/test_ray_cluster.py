"""A Ray cluster simulated on one machine: a head and two worker nodes, each its own `ray start` process
tree; the study spreads over both, one node is SIGKILLed mid-job, the job is retried on the other."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.pipeline.sandbox import bwrap_path
from llmseg_mlflow.tracking.local_server import free_port
from tests.sweep.conftest import start_sweep, wait_for, write_study
from tests.sweep.test_faults import STUDY, _current, _descendants, _roots, _training_logs

pytest.importorskip("ray")
pytestmark = [pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap"), pytest.mark.slow]

RAY = str(Path(sys.executable).with_name("ray"))


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it at once: Ray's workers start sessions of their own, so a
    machine's death is its whole tree, not a process group."""
    for p in _descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive_nodes(address: str) -> int:
    """Worker nodes the head counts as alive, asked from a process of its own (the test process holds no Ray)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return int(out.stdout.split()[-1]) - 1 if out.returncode == 0 and out.stdout.split() else 0


def _ray_start(name: str, args: list[str], temp: Path, logs: Path) -> subprocess.Popen:
    """One `ray start --block` (a machine of the cluster), returned once it says it is up; its own temp
    folder as on a machine of its own (nodes sharing one race for the same socket names)."""
    log = logs / f"ray-{name}.log"
    proc = subprocess.Popen(
        [RAY, "start", *args, "--block", "--temp-dir", str(temp / name), "--object-store-memory", str(80 << 20)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while "Ray runtime started" not in log.read_text():
        assert proc.poll() is None, f"`ray start` of {name} exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"`ray start` of {name} not up in 3 minutes: {log.read_text()[-3000:]}"
        time.sleep(0.5)
    return proc


@pytest.fixture
def ray_cluster(monkeypatch, tmp_path) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """A head with no CPUs (it only schedules) and nodes `a` and `b` with one CPU each; token auth, as
    `ray start --head` turns it on in Ray 2.60, with the token every process of the test shares."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: unix socket paths must fit 107 bytes
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["head"] = _ray_start(
            "head",
            [
                "--head",
                "--port",
                str(port),
                "--num-cpus",
                "0",
                "--include-dashboard=false",
                "--ray-client-server-port",
                str(free_port()),
                "--disable-usage-stats",
            ],
            temp,
            tmp_path,
        )
        for name in ("a", "b"):
            procs[name] = _ray_start(name, ["--address", address, "--num-cpus", "1"], temp, tmp_path)
        deadline = time.monotonic() + 120
        while _alive_nodes(address) < 2:
            assert time.monotonic() < deadline, "the Ray nodes did not join the head in 2 minutes"
            time.sleep(1)
        yield address, {n: procs[n] for n in ("a", "b")}
    finally:
        for proc in procs.values():
            _kill_tree(proc.pid)
            proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_node_killed_mid_job_has_its_job_retried_on_the_other_node(
    ray_cluster, tracking, llmseg_home, replay_models, tmp_path
):
    address, nodes = ray_cluster
    path = write_study(replay_models, "t-ray-cluster", STUDY.format(repeats=2))
    logs = tmp_path / "logs"
    driver = start_sweep(path, logs, args=["--executor", "ray", "--ray-address", address])

    # Both jobs train at once, one on each node (each node has the one CPU a job asks for).
    pids = wait_for(
        lambda: (
            len(found := _training_logs(logs)) == 2
            and [int(re.search(r"\(pid (\d+)\)", f.read_text()).group(1)) for f in found]
        ),
        driver,
    )
    where = {name: [p for p in pids if p in _descendants(proc.pid)] for name, proc in nodes.items()}
    assert sorted(len(v) for v in where.values()) == [1, 1], f"jobs did not spread over the nodes: {where}"
    victim = next(p for p in where["a"])
    sandbox = wait_for(lambda: {p for p, c in _descendants(victim).items() if "bwrap" in c}, driver)
    tree = set(_descendants(nodes["a"].pid))

    _kill_tree(nodes["a"].pid)  # the machine dies: its raylet, workers and the job's sandbox at once
    nodes["a"].wait(timeout=30)  # reaped, so only what outlived the kill is left in /proc
    deadline = time.monotonic() + 15
    while (left := tree & set(_descendants(1))) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not left and sandbox <= tree

    out, _ = driver.communicate(timeout=900)
    assert driver.returncode == 0, out
    assert "ray task failed" in out and "retry 1 of 2 in 10 s" in out, out
    assert "done 2, skipped 0, failed 0" in out and "(1 retry after platform failures)" in out, out
    roots = _roots(MlflowClient(), "t-ray-cluster")
    current = _current(roots)
    assert Counter(r.data.tags["repeat"] for r in current) == {"1": 1, "2": 1}  # each job finished once
    assert all(r.info.status == "FINISHED" and "heldout_dice_mean" in r.data.metrics for r in current)
    [old] = [r for r in roots if "superseded_by" in r.data.tags]
    assert old.info.status == "KILLED" and old.data.tags["superseded_by"] in {r.info.run_id for r in current}
    retried = next(r for r in current if r.info.run_id == old.data.tags["superseded_by"])
    assert retried.data.tags["sweep_retries"] == "1"
    assert nodes["b"].poll() is None  # the surviving node ran the retry
