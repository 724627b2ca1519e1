"""The sweep driver: plan against the tracking server, run what is missing, report every job."""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import mlflow
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepared import load_prepared
from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.paths import data_root, llmseg_home, sweeps_root
from llmseg_mlflow.pipeline import slots
from llmseg_mlflow.promote import promote
from llmseg_mlflow.sweep.cost import pipeline_cost, token_estimates
from llmseg_mlflow.sweep.jobs import Job, JobState, StudyRuns, expand, retrying
from llmseg_mlflow.sweep.study import Study
from llmseg_mlflow.sweep.worker import JobSpec, Outcome
from llmseg_mlflow.tracking.outage import is_tracking_outage
from llmseg_mlflow.tracking.runs import check_tracking_server, ensure_experiment
from llmseg_mlflow.tracking.schema import Status

RETRY_DELAYS_S = (10.0, 30.0)  # a job that found the tracking server away (nothing logged) runs again after these


class Executor(Protocol):
    """What the driver needs from an executor (local.LocalExecutor, ray_executor.RayExecutor)."""

    name: str

    def describe(self) -> str: ...
    def capacity(self) -> int: ...
    def submit(self, spec: JobSpec) -> None: ...
    def poll(self, timeout: float) -> list[tuple[Outcome, float]]: ...
    def running(self) -> int: ...
    def interrupt(self) -> None: ...
    def close(self, grace_s: float = 30.0) -> None: ...


@dataclass(frozen=True)
class SweepOptions:
    """How to run a study (the CLI's options)."""

    executor: str = "local"  # local | ray
    workers: int | None = None  # local: job slots (default: one per GPU, else 1)
    ray_address: str | None = None
    data_root: Path | None = None
    work_root: Path | None = None
    models_file: Path | None = None
    unsafe_no_sandbox: bool = False
    log_dir: Path | None = None  # default $LLMSEG_HOME/sweeps/<study>/logs
    forward_env: tuple[str, ...] = ()  # extra variables sent to every job (e.g. API keys for Ray workers)
    training_slots: int | None = None  # local: at most this many trainings at once (jobs beyond wait on the LLM)
    retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S


@dataclass
class JobReport:
    """One row of the final table."""

    job: Job
    state: str  # done (ran now) | skipped | failed | not run
    status: str = ""
    run_id: str = ""
    reason: str = ""
    minutes: float | None = None
    dice: float | None = None
    cost: float | None = None
    observed_s: float | None = None
    inner_s: float | None = None
    superseded: list[str] = field(default_factory=list)
    retries: int = 0  # times the job ran again because the platform failed under it


@dataclass
class SweepSummary:
    """What a sweep did, job by job."""

    study: str
    experiment_id: str | None
    reports: list[JobReport]
    log_dir: Path
    interrupted: bool = False

    def count(self, state: str) -> int:
        """Jobs in a state."""
        return sum(r.state == state for r in self.reports)


def _open_client() -> MlflowClient:
    try:
        check_tracking_server()
    except Exception as exc:  # noqa: BLE001 - only an absent server is the user's to fix; the rest propagates
        if not is_tracking_outage(exc):
            raise
        raise UsageError(str(exc)) from exc
    return MlflowClient()


def _local_store(uri: str) -> Path | None:
    """The file or folder of a local tracking store (sqlite:///x.db, file:/x, a plain path), else None."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).expanduser()
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file:").removeprefix("//")).expanduser()
    return None if "://" in uri else Path(uri).expanduser()


def _existing_store_client() -> MlflowClient | None:
    """A client for the tracking store, or None when it is a local store that does not exist yet: opening
    one would create it (`./mlflow.db` when no URI is set), and a dry run writes nothing."""
    local = _local_store(mlflow.get_tracking_uri())
    if local is not None and not local.exists():
        return None
    return _open_client()


def plan(study: Study, client: MlflowClient | None) -> tuple[list[JobState], StudyRuns]:
    """Every job of the study with what the server already holds for it (nothing, without a client)."""
    exp = retrying(lambda: client.get_experiment_by_name(study.name), "get experiment") if client else None
    runs = StudyRuns(client, exp.experiment_id if exp else None).load()
    return [runs.state(job) for job in expand(study)], runs


def _rerun(job: Job) -> str:
    """The budget column of the plan: epochs of a budget rerun, s<seed> of a seed retraining, r<rounds> of a refine."""
    if job.rounds:
        return f"r{job.rounds}"
    return str(job.budget) if job.budget else f"s{job.seed}" if job.seed is not None else ""


def _fmt_cost(value: float | None) -> str:
    return "?" if value is None else f"${value:,.2f}"


def dry_run(study: Study, out: Callable[[str], None] = print) -> list[JobState]:
    """Print the jobs, which are done, and the expected API cost of the rest; runs nothing, writes nothing."""
    client = _existing_store_client()
    if client is None:
        out(f"no tracking store at {mlflow.get_tracking_uri()} yet: every job is still to run")
    states, _ = plan(study, client)
    models = {m.key: m for m in study.models}
    estimates = token_estimates(client, list(models.values()))
    kinds = {k: sum(s.job.kind == k for s in states) for k in ("generate", "budget", "seed", "refine", "baseline")}
    out(
        f"study {study.name} ({study.path}): {len(states)} jobs "
        f"({kinds['generate']} generate, {kinds['budget']} budget reruns, {kinds['seed']} seed retrainings, "
        f"{kinds['refine']} refinements, {kinds['baseline']} baselines)"
    )
    out(f"{'kind':9} {'model':22} {'dataset':22} {'rep':>3} {'budget':>6}  {'state':26} {'expected cost':>13}")
    total = 0.0
    unknown: set[str] = set()
    cost: float | None
    for s in states:
        job, cost = s.job, 0.0
        if s.state != "done" and job.kind in ("generate", "refine"):
            cost = pipeline_cost(models[job.model], estimates[job.model])
            if cost is None:
                unknown.add(job.model)
            else:
                cost *= job.rounds or 1  # a round is roughly another conversation of the same length: an upper guess
                total += cost
        state = (
            f"done ({s.done.data.tags.get('status')})"
            if s.done
            else f"retry ({len(s.stale)} left by a crash)"
            if s.stale
            else "to run"
        )
        shown = "" if s.state == "done" else _fmt_cost(cost)
        out(f"{job.kind:9} {job.model:22} {job.dataset:22} {job.repeat:3d} {_rerun(job):>6}  {state:26} {shown:>13}")
    todo = [s for s in states if s.state != "done"]
    out(
        f"done: {len(states) - len(todo)}, to retry: {sum(s.state == 'retry' for s in states)}, "
        f"to run: {sum(s.state == 'new' for s in states)}"
    )
    out(
        f"expected API cost of what is left: {_fmt_cost(total)} (catalog list prices; budget reruns and "
        "baselines call no LLM; a refinement round is counted as one more pipeline; cached replies cost nothing)"
    )
    for key in sorted({s.job.model for s in todo if s.job.kind == "generate"}):
        est, cost = estimates[key], pipeline_cost(models[key], estimates[key])
        out(f"  {key:22} {_fmt_cost(cost):>9} per pipeline ({est.basis})")
    if unknown:
        out(f"  no catalog price for: {', '.join(sorted(unknown))} (not in the total)")
    for warning in study.warnings:
        out(f"warning: {warning}")
    return states


def _log_name(job: Job) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{job.kind}-{job.label}") + ".log"


def _job_env(opts: SweepOptions) -> dict[str, str]:
    env = {
        "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "LLMSEG_HOME": str(llmseg_home()),
    }
    for name in ("LLMSEG_MODELS_FILE", "LLMSEG_DATASETS_FILE", "LLMSEG_CACHE_DIR", *opts.forward_env):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if opts.training_slots and opts.executor == "local":
        from llmseg_mlflow.sweep.local import visible_gpus

        folder = sweeps_root(opts.log_dir) / "training-slots"
        env[slots.ENV] = slots.slots_value(folder, opts.training_slots, visible_gpus())
    return env


def make_executor(opts: SweepOptions) -> Executor:
    """The executor the options name."""
    if opts.executor == "local":
        from llmseg_mlflow.sweep.local import LocalExecutor, visible_gpus

        gpus = visible_gpus()
        return LocalExecutor(opts.workers or max(1, len(gpus)), gpus, log_dir=opts.log_dir)
    if opts.executor == "ray":
        from llmseg_mlflow.sweep.ray_executor import RayExecutor

        return RayExecutor(opts.ray_address, num_cpus=opts.workers)
    raise UsageError(f"unknown executor {opts.executor!r}; use local or ray")


class _Driver:
    """Runs the jobs a plan left, in dependency order, and records what became of each."""

    def __init__(
        self,
        study: Study,
        opts: SweepOptions,
        client: MlflowClient,
        runs: StudyRuns,
        executor: Executor,
        out: Callable[[str], None],
    ) -> None:
        self.study, self.opts, self.client, self.runs, self.ex, self.out = study, opts, client, runs, executor, out
        self.log_dir = (Path(opts.log_dir) if opts.log_dir else sweeps_root() / study.name / "logs").resolve()
        self.env = _job_env(opts)
        self.reports: dict[tuple, JobReport] = {}
        self.ready: deque[tuple[float, Job, str | None]] = deque()  # (not before, job, source run)
        self.waiting: dict[tuple, list[Job]] = {}  # source key -> budget jobs waiting for it
        self.attempts: dict[tuple, int] = {}
        self.spec_source: dict[tuple, str | None] = {}  # budget jobs: the source run they were given
        self.digests: dict[str, str | None] = {}

    def spec(self, job: Job, source_run: str | None) -> JobSpec:
        base = self.study.baselines
        return JobSpec(
            job=job,
            study=self.study.name,
            model_arg=self.study.model_args.get(job.model, job.model),
            overrides=dict(self.study.overrides),
            env=self.env,
            log_file=str(self.log_dir / _log_name(job)),
            source_run=source_run,
            baseline_epochs=base.epochs,
            baseline_iterations=base.iterations,
            data_root=str(self.opts.data_root) if self.opts.data_root else None,
            work_root=str(self.opts.work_root) if self.opts.work_root else None,
            models_file=str(self.opts.models_file) if self.opts.models_file else None,
            unsafe_no_sandbox=self.opts.unsafe_no_sandbox,
            dataset_digest=self.digest(job.dataset),
        )

    def digest(self, dataset: str) -> str | None:
        """The manifest digest of this machine's copy of a dataset (None when it has none): each worker checks
        its own copy against it, so nodes with their own data roots cannot train on different splits."""
        if dataset not in self.digests:
            try:
                prepared = load_prepared(get_dataset(dataset), data_root(self.opts.data_root))
            except Exception:  # noqa: BLE001 - an unknown or broken dataset fails its jobs with the reason
                prepared = None
            self.digests[dataset] = prepared.digest if prepared else None
        return self.digests[dataset]

    def schedule(self, states: list[JobState]) -> None:
        by_key = {s.job.key: s for s in states}
        for s in states:
            job = s.job
            if s.done:
                self.reports[job.key] = JobReport(
                    job, "skipped", s.done.data.tags.get("status", ""), s.done.info.run_id, "done earlier"
                )
            elif job.source is not None:  # a budget or seed rerun waits for the pipeline it retrains
                source = job.source
                src = by_key[source.key]
                if src.done:
                    self.release(job, src.done.info.run_id, src.done.data.tags.get("status", ""))
                else:
                    self.waiting.setdefault(source.key, []).append(job)
            else:
                self.ready.append((0.0, job, None))

    def release(self, job: Job, source_run: str | None, source_status: str) -> None:
        """A budget job whose source has ended: queue it, or skip it when there is no pipeline to retrain."""
        if source_run and source_status == Status.SUCCEEDED.value:
            self.ready.append((0.0, job, source_run))
        else:
            why = f"source pipeline ended {source_status}" if source_status else "source job failed"
            self.reports[job.key] = JobReport(
                job,
                "skipped",
                reason=f"{why}: no working code to retrain" + (f" (run {source_run})" if source_run else ""),
            )

    def total(self) -> int:
        return len(self.ready) + sum(len(v) for v in self.waiting.values())

    def finish(self, outcome: Outcome, observed_s: float, bar: tqdm) -> None:
        """Record one job's end: find its root, mark what it supersedes, print its line, release dependents."""
        job = outcome.job
        run_id = outcome.run_id
        if run_id is None:
            root = self.runs.newest_root(job, outcome.started_ms - 1000)
            run_id = root.info.run_id if root else None
        rep = JobReport(
            job,
            "done" if outcome.ok else "failed",
            outcome.status or "",
            run_id or "",
            outcome.reason,
            minutes=observed_s / 60,
            observed_s=observed_s,
            inner_s=outcome.inner_s,
        )
        if run_id:
            run = retrying(lambda: self.client.get_run(run_id), "get run")
            if job.budget and "budget" not in run.data.tags:  # baselines do not tag their budget themselves
                retrying(lambda: self.client.set_tag(run_id, "budget", str(job.budget)), "tag run")
            rep.superseded = self.runs.supersede(job, run_id)
            rep.status = rep.status or run.data.tags.get("status", "")
            rep.dice = run.data.metrics.get("heldout_dice_best" if job.kind == "refine" else "heldout_dice_mean")
            rep.cost = run.data.metrics.get("cost_usd")
            if not outcome.ok and not rep.reason:
                rep.reason = run.data.tags.get("error", "")
        n = self.attempts[job.key] = self.attempts.get(job.key, 0) + 1
        if outcome.retryable and n <= len(self.opts.retry_delays_s):
            delay = self.opts.retry_delays_s[n - 1]
            bar.write(
                f"  {job.label}: {outcome.reason[:160]}; retry {n} of {len(self.opts.retry_delays_s)} in {delay:.0f} s"
            )
            self.ready.append((time.monotonic() + delay, job, self.spec_source.get(job.key)))
            return
        rep.retries = n - 1
        if rep.retries and run_id:  # the run says how often the platform failed under it
            retrying(lambda: self.client.set_tag(run_id, "sweep_retries", str(rep.retries)), "tag run")
        if not outcome.ok:
            rep.reason = f"{rep.reason} (log: {self.log_dir / _log_name(job)})"
        self.reports[job.key] = rep
        bar.update(1)
        dice = "-" if rep.dice is None else f"{rep.dice:.3f}"
        cost = "-" if rep.cost is None else f"${rep.cost:.2f}"
        bar.write(
            f"{job.model:22} {job.dataset:22} r{job.repeat:<2} {('b' + str(job.budget)) if job.budget else _rerun(job):5} "
            f"{rep.status or rep.state:16} dice {dice:6} {rep.minutes:6.1f} min {cost:>8}"
            + (f"  FAILED: {outcome.reason[:160]}" if not outcome.ok else "")
        )
        for dependent in self.waiting.pop(job.key, []):
            self.release(dependent, run_id if outcome.ok else None, rep.status if outcome.ok else "")
            if dependent.key in self.reports:
                bar.update(1)

    def loop(self) -> bool:
        """Submit while slots are free, collect outcomes; True when interrupted by Ctrl-C."""
        bar = tqdm(total=self.total(), desc=f"sweep {self.study.name}", unit="job")
        try:
            while self.ready or self.ex.running():
                now = time.monotonic()
                for _ in range(len(self.ready)):
                    not_before, job, source = self.ready.popleft()
                    if not_before > now or self.ex.capacity() <= 0:
                        self.ready.append((not_before, job, source))
                        continue
                    self.spec_source[job.key] = source
                    self.ex.submit(self.spec(job, source))
                if not self.ex.running():  # only retries waiting for their time: nothing to wait on
                    time.sleep(0.5)
                for outcome, observed in self.ex.poll(timeout=1.0):
                    self.finish(outcome, observed, bar)
            return False
        except KeyboardInterrupt:
            bar.write("interrupted: waiting for running jobs to record their state (Ctrl-C again to kill them)")
            try:
                self.ex.interrupt()
                deadline = time.monotonic() + 30
                while self.ex.running() and time.monotonic() < deadline:
                    for outcome, observed in self.ex.poll(timeout=1.0):
                        self.finish(outcome, observed, bar)
            except KeyboardInterrupt:
                pass
            return True
        finally:
            self.ex.close(grace_s=5.0)
            bar.close()


def run_sweep(
    study: Study,
    opts: SweepOptions = SweepOptions(),
    out: Callable[[str], None] = print,
    executor: Executor | None = None,
) -> SweepSummary:
    """Run every job of the study the tracking server does not hold yet; one failing job never stops the rest."""
    os.environ.pop("MLFLOW_RUN_ID", None)  # under `mlflow run -e sweep`, pipelines are roots of their own
    client = _open_client()
    exp_id = retrying(lambda: ensure_experiment(client, study.name), "create experiment")
    states, runs = plan(study, client)
    for warning in study.warnings:
        out(f"warning: {warning}")
    ex = executor or make_executor(opts)
    driver = _Driver(study, opts, client, runs, ex, out)
    driver.schedule(states)
    out(
        f"study {study.name}: {len(states)} jobs, {sum(s.state == 'done' for s in states)} done earlier, "
        f"{sum(s.state == 'retry' for s in states)} to retry, {driver.total()} to run; {ex.describe()}"
    )
    interrupted = driver.loop()
    reports = [driver.reports.get(s.job.key) or JobReport(s.job, "not run", reason="interrupted") for s in states]
    summary = SweepSummary(study.name, exp_id, reports, driver.log_dir, interrupted)
    print_table(summary, out)
    if study.promote and not interrupted:
        _promote_all(study, out)
    return summary


def _promote_all(study: Study, out: Callable[[str], None]) -> None:
    """Each dataset's best pipeline into the registry; a dataset without one is said, not an error."""
    for dataset in study.datasets:
        try:
            done = promote(study.name, dataset, progress=lambda m: out(f"promote: {m}"))
        except UsageError as exc:
            out(f"promote {dataset}: {exc}")
            continue
        out(f"promote {dataset}: {done.uri} -> version {done.version}")


def print_table(summary: SweepSummary, out: Callable[[str], None] = print) -> None:
    """The final table: every job, what became of it, and where to look."""
    out("")
    out(f"{'job':52} {'state':8} {'status':16} {'dice':>6} {'min':>6} {'cost':>8}  run / reason")
    for r in summary.reports:
        dice = "" if r.dice is None else f"{r.dice:.3f}"
        minutes = "" if r.minutes is None else f"{r.minutes:.1f}"
        cost = "" if r.cost is None else f"${r.cost:.2f}"
        note = r.run_id + (f" {r.reason}" if r.reason else "")
        if r.superseded:
            note += f" (retry of {', '.join(r.superseded)})"
        if r.retries:
            note += f" ({r.retries} {'retry' if r.retries == 1 else 'retries'} after platform failures)"
        out(
            f"{r.job.kind[:4] + ' ' + r.job.label:52} {r.state:8} {r.status:16} {dice:>6} {minutes:>6} {cost:>8}  {note}"
        )
    out(
        f"done {summary.count('done')}, skipped {summary.count('skipped')}, failed {summary.count('failed')}"
        + (
            f", not run {summary.count('not run')} (interrupted: run the same command again)"
            if summary.interrupted
            else ""
        )
    )
    out(
        f"runs: experiment {summary.study!r} (id {summary.experiment_id}) at {mlflow.get_tracking_uri()}; "
        "`mlflow ui`, filter tags.kind = 'pipeline'"
    )
    out(f"job logs: {summary.log_dir}")
