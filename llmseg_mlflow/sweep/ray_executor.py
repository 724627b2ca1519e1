"""The Ray executor: the same jobs as Ray tasks with resource requests; Ray does the scheduling."""

from __future__ import annotations

import time
from typing import Any

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.sweep.worker import JobSpec, Outcome, execute_job


def _task(spec: JobSpec) -> Outcome:
    """The Ray task body (module level, so workers import it by name)."""
    return execute_job(spec)


class RayExecutor:
    """Jobs as Ray tasks: a GPU each when the cluster has GPUs (Ray sets CUDA_VISIBLE_DEVICES), else CPUs.

    Uses the Ray instance already initialised in this process if any, else connects to `address`
    (`ray://head:10001`, `auto`), else starts a local one. Every task logs to the driver's tracking
    server (MLFLOW_TRACKING_URI is sent with each job), so it must be reachable from the workers.
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_job: float = 1.0, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise UsageError("the ray executor needs Ray: pip install 'ray[client]>=2.40'") from exc
        self.ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                ray.init(
                    address=address,
                    num_cpus=None if address else num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UsageError(
                    f"could not connect to Ray at {address!r} ({exc}); start the cluster "
                    "(`ray start --head`) or check --ray-address"
                ) from exc
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus_per_job = cpus_per_job if not self.gpus else 1.0
        self._remote = ray.remote(max_retries=0)(_task)  # retries are decided from the tracking server
        self._pending: dict[Any, tuple[JobSpec, float]] = {}

    def describe(self) -> str:
        """One line for the log."""
        res = self.ray.cluster_resources()
        return f"ray executor: cluster with {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"

    def capacity(self) -> int:
        """Ray queues tasks by their resource requests, so everything ready is submitted at once."""
        return 1 << 30

    def submit(self, spec: JobSpec) -> None:
        """Submit one job as a task: one GPU for training where the cluster has them."""
        needs_gpu = self.gpus > 0
        ref = self._remote.options(
            num_gpus=1 if needs_gpu else 0, num_cpus=self.cpus_per_job, name=f"sweep:{spec.job.label}"
        ).remote(spec)
        self._pending[ref] = (spec, time.monotonic())

    def poll(self, timeout: float) -> list[tuple[Outcome, float]]:
        """Outcomes of tasks that ended within timeout, each with the seconds it took as seen from here."""
        if not self._pending:
            return []
        ready, _ = self.ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout)
        out = []
        for ref in ready:
            spec, submitted = self._pending.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a dead worker or node fails this job only
                outcome = Outcome(
                    spec.job,
                    ok=False,
                    reason=f"ray task failed: {type(exc).__name__}: {str(exc).strip()[:600]}",
                    retryable=True,  # execute_job never raises: the worker or its node died; run it elsewhere
                    started_ms=int((time.time() - (time.monotonic() - submitted)) * 1000),
                )
            out.append((outcome, time.monotonic() - submitted))
        return out

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in running tasks (each marks its run and reports back)."""
        for ref in self._pending:
            self.ray.cancel(ref, force=False)

    def running(self) -> int:
        """Tasks in flight."""
        return len(self._pending)

    def close(self, grace_s: float = 30.0) -> None:
        """Cancel what is left; shut down a Ray instance this executor started."""
        for ref in list(self._pending):
            self.ray.cancel(ref, force=True)
        self._pending.clear()
        if self._owns:
            self.ray.shutdown()
