"""The local executor: a pool of worker processes on this machine, one job at a time each, one GPU per worker."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from llmseg_mlflow.sweep.worker import JobSpec, Outcome, execute_job

_PR_SET_PDEATHSIG = 1


def visible_gpus() -> list[str]:
    """GPU ids this machine lets us use: CUDA_VISIBLE_DEVICES if set, else every CUDA device torch sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA means CPU
        return []


def _interrupted(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the worker
    raise KeyboardInterrupt


def _serve(conn: Connection, parent: int, env: dict[str, str], log_file: str) -> None:
    """A worker process: die with the driver, then run the jobs it is sent until told to stop."""
    try:  # a SIGKILLed driver must take its jobs along, or a rerun would duplicate them
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)
    # Ctrl-C reaches the driver only; it forwards one SIGTERM to busy workers, which ends the job like
    # Ctrl-C would (its run is marked), while a second signal on the terminal cannot cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupted)
    os.environ.update(env)  # CUDA_VISIBLE_DEVICES and thread counts, before torch is imported
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1), os.dup2(out, 2)  # library chatter between jobs (MLflow at exit, ...) stays off the terminal
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        conn.send(execute_job(spec))


@dataclass
class _Worker:
    proc: mp.process.BaseProcess
    conn: Connection
    slot: int
    spec: JobSpec | None = None
    submitted: float = 0.0


class LocalExecutor:
    """`workers` processes, each running one job at a time; a process that dies fails its job only.

    With GPUs, worker i trains on GPU i mod n (CUDA_VISIBLE_DEVICES, passed through to the sandbox); on CPU
    each worker gets cores // workers torch threads (OMP_NUM_THREADS, also passed through).
    """

    name = "local"

    def __init__(self, workers: int, gpus: list[str] | None = None, log_dir: Path | None = None) -> None:
        self.workers = max(1, workers)
        self.gpus = visible_gpus() if gpus is None else gpus
        self.threads = max(1, (os.cpu_count() or 1) // self.workers)
        self.log_dir = log_dir
        self._ctx = mp.get_context("spawn")  # fork would copy the driver's MLflow client threads and locks
        self._pool: dict[int, _Worker] = {}

    def describe(self) -> str:
        """One line for the log."""
        where = f"GPUs {','.join(self.gpus)}" if self.gpus else f"CPU, {self.threads} torch threads each"
        return f"local executor: {self.workers} worker(s), {where}"

    def capacity(self) -> int:
        """Jobs that can start now."""
        return self.workers - sum(w.spec is not None for w in self._pool.values())

    def _env(self, slot: int) -> dict[str, str]:
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(self.threads))}
        env["MKL_NUM_THREADS"] = os.environ.get("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env

    def _start(self, slot: int, log_dir: Path) -> _Worker:
        parent_end, child_end = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_serve,
            name=f"sweep-worker-{slot}",
            args=(child_end, os.getpid(), self._env(slot), str(log_dir / f"worker-{slot}.log")),
        )
        proc.start()
        child_end.close()
        return _Worker(proc, parent_end, slot)

    def submit(self, spec: JobSpec) -> None:
        """Give a job to an idle worker (starting it, or a fresh one for a worker that died)."""
        slot = next(s for s in range(self.workers) if s not in self._pool or self._pool[s].spec is None)
        worker = self._pool.get(slot)
        if worker is None or not worker.proc.is_alive():
            worker = self._pool[slot] = self._start(slot, self.log_dir or Path(spec.log_file).parent)
        worker.spec = replace(spec, threads=spec.threads or int(self._env(slot)["OMP_NUM_THREADS"]))
        worker.submitted = time.monotonic()
        worker.conn.send(worker.spec)

    def poll(self, timeout: float) -> list[tuple[Outcome, float]]:
        """Outcomes of jobs that ended within timeout, each with the seconds it took as seen from here."""
        # Keyed by what wait() watches: the worker's connection and its process sentinel (an int).
        busy: dict[Any, _Worker] = {w.conn: w for w in self._pool.values() if w.spec is not None}
        busy.update({w.proc.sentinel: w for w in busy.values()})
        ended = {id(busy[h]): busy[h] for h in (wait(list(busy), timeout=timeout) if busy else [])}
        out = []
        for w in ended.values():
            outcome = None
            try:
                if w.conn.poll():
                    outcome = w.conn.recv()
            except (EOFError, OSError):
                pass
            if outcome is None:  # the process died under the job
                assert w.spec is not None  # only busy workers are waited on
                w.proc.join()
                code = w.proc.exitcode
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                outcome = Outcome(
                    w.spec.job,
                    ok=False,
                    reason=f"worker process died ({why}); see {w.spec.log_file}",
                    retryable=True,  # the OOM killer or a person, not the pipeline: its sandbox died with it
                    started_ms=int((time.time() - (time.monotonic() - w.submitted)) * 1000),
                )
                w.conn.close()
                del self._pool[w.slot]
            else:
                w.spec = None
            out.append((outcome, time.monotonic() - w.submitted))
        return out

    def interrupt(self) -> None:
        """Ask busy workers to stop their jobs (each marks its run and reports back)."""
        for w in self._pool.values():
            if w.spec is not None and w.proc.is_alive():
                assert w.proc.pid is not None  # a started process has a pid
                os.kill(w.proc.pid, signal.SIGTERM)

    def running(self) -> int:
        """Jobs in flight."""
        return sum(w.spec is not None for w in self._pool.values())

    def close(self, grace_s: float = 30.0) -> None:
        """Stop the workers: idle ones at once; busy ones get grace_s to end, then are killed."""
        deadline = time.monotonic() + grace_s
        for w in self._pool.values():
            try:
                w.conn.send(None)
            except OSError:
                pass
        for w in self._pool.values():
            w.proc.join(max(0.0, deadline - time.monotonic()) if w.spec is not None else 10.0)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()
        self._pool.clear()
