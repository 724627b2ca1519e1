"""Training slots: processes sharing N slots never train more than N at once; a killed holder frees its slot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llmseg_mlflow.pipeline.slots import ENV, slots_value, training_slot

HOLD = """
import sys, time
from llmseg_mlflow.pipeline.slots import training_slot
with training_slot(poll_s=0.05) as env:
    start = time.time()
    print(env.get("CUDA_VISIBLE_DEVICES", "-"), flush=True)
    time.sleep(float(sys.argv[1]))
    print(start, time.time(), flush=True)
"""


def _hold(seconds: float, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(seconds)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_no_more_than_n_hold_a_slot_at_once_and_each_gets_its_gpu(tmp_path):
    env = {**os.environ, ENV: slots_value(tmp_path / "slots", 2, ["0", "1"])}
    procs = [_hold(1.0, env) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    spans = sorted((float(o[1]), float(o[2])) for o in outs)
    for t in (s for s, _ in spans):  # at every start, at most 2 spans are open
        assert sum(s <= t < e for s, e in spans) <= 2
    assert spans[-1][0] >= spans[0][1] - 0.05  # the last two had to wait
    assert sorted(o[0] for o in outs) == ["0", "0", "1", "1"]


def test_a_killed_holder_frees_its_slot(tmp_path):
    env = {**os.environ, ENV: slots_value(tmp_path / "slots", 1, [])}
    first = _hold(60.0, env)
    assert first.stdout.readline().strip() == "-"  # it holds the only slot
    first.send_signal(signal.SIGKILL)
    first.wait()
    start = time.monotonic()
    second = _hold(0.1, env)
    assert second.wait(timeout=30) == 0 and time.monotonic() - start < 20


def test_without_the_variable_there_is_no_limit(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with training_slot() as env:
        assert env == {}
