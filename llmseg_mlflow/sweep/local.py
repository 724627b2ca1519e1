"""The local executor: a pool of worker slots on this machine, one process per job, one GPU per slot."""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait

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


def _child(spec: JobSpec, conn: Connection, parent: int) -> None:
    """Entry point of a job process: die with the driver, run the job, send the outcome back."""
    try:  # a SIGKILLed driver must take its jobs along, or a rerun would duplicate them
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)
    conn.send(execute_job(spec))
    conn.close()


@dataclass
class _Running:
    proc: mp.process.BaseProcess
    conn: Connection
    slot: int
    spec: JobSpec
    submitted: float


class LocalExecutor:
    """`workers` slots; each job runs in a fresh process (a crashed job cannot break the pool).

    With GPUs, slot i trains on GPU i mod n (CUDA_VISIBLE_DEVICES, passed through to the sandbox); on CPU
    each job gets cores // workers torch threads (OMP_NUM_THREADS, also passed through).
    """

    name = "local"

    def __init__(self, workers: int, gpus: list[str] | None = None) -> None:
        self.workers = max(1, workers)
        self.gpus = visible_gpus() if gpus is None else gpus
        self.threads = max(1, (os.cpu_count() or 1) // self.workers)
        self._ctx = mp.get_context("spawn")  # fork would copy the driver's MLflow client threads and locks
        self._free = list(range(self.workers))
        self._running: dict[int, _Running] = {}

    def describe(self) -> str:
        """One line for the log."""
        where = f"GPUs {','.join(self.gpus)}" if self.gpus else f"CPU, {self.threads} torch threads each"
        return f"local executor: {self.workers} worker(s), {where}"

    def capacity(self) -> int:
        """Jobs that can start now."""
        return len(self._free)

    def submit(self, spec: JobSpec) -> None:
        """Start a job in a free slot."""
        slot = self._free.pop(0)
        env = dict(spec.env)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        env.setdefault("OMP_NUM_THREADS", str(self.threads))
        env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
        spec = replace(spec, env=env, threads=spec.threads or int(env["OMP_NUM_THREADS"]))
        parent_end, child_end = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child, args=(spec, child_end, os.getpid()), name=f"sweep:{spec.job.label}")
        proc.start()
        child_end.close()
        self._running[proc.sentinel] = _Running(proc, parent_end, slot, spec, time.monotonic())

    def poll(self, timeout: float) -> list[tuple[Outcome, float]]:
        """Outcomes of jobs that ended within timeout, each with the seconds it took as seen from here."""
        ended = wait(list(self._running), timeout=timeout) if self._running else []
        out = []
        for sentinel in ended:
            r = self._running.pop(sentinel)
            outcome = None
            try:
                if r.conn.poll():
                    outcome = r.conn.recv()
            except (EOFError, OSError):
                pass
            r.proc.join()
            if outcome is None:
                code = r.proc.exitcode
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                outcome = Outcome(r.spec.job, ok=False, reason=f"worker process died ({why}); see {r.spec.log_file}",
                                  started_ms=int((time.time() - (time.monotonic() - r.submitted)) * 1000))
            r.conn.close()
            self._free.append(r.slot)
            out.append((outcome, time.monotonic() - r.submitted))
        return out

    def running(self) -> int:
        """Jobs in flight."""
        return len(self._running)

    def close(self, grace_s: float = 30.0) -> None:
        """Stop jobs still running (after Ctrl-C they were interrupted too): wait grace_s, then kill."""
        deadline = time.monotonic() + grace_s
        for r in self._running.values():
            r.proc.join(max(0.0, deadline - time.monotonic()))
            if r.proc.is_alive():
                r.proc.kill()
                r.proc.join()
        self._running.clear()
