"""Training slots shared by the processes of one machine: at most N sandboxed executions at once.

A sweep may run more jobs than it has GPUs, so that one job's LLM calls overlap another's training;
each execution then waits here for a slot (a file lock: released by the kernel even when its holder
is SIGKILLed) and, with GPUs, trains on the slot's GPU. Configured by the sweep through one variable:
LLMSEG_TRAINING_SLOTS="<folder>:<n>[:<gpu>,<gpu>...]"; unset means no limit.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "LLMSEG_TRAINING_SLOTS"


def slots_value(folder: Path, n: int, gpus: list[str]) -> str:
    """The variable's value for n slots in folder (slot i trains on gpus[i % len(gpus)])."""
    folder.mkdir(parents=True, exist_ok=True)
    return f"{folder}:{n}" + (f":{','.join(gpus)}" if gpus else "")


@contextmanager
def training_slot(poll_s: float = 0.5) -> Iterator[dict[str, str]]:
    """Hold a free slot for the block; yields the environment the execution needs (its GPU)."""
    value = os.environ.get(ENV)
    if not value:
        yield {}
        return
    folder, n, *rest = value.split(":")
    gpus = [g for g in rest[0].split(",") if g] if rest else []
    while True:
        for i in range(int(n)):
            fd = os.open(Path(folder) / f"slot-{i}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else {}
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(poll_s)
