"""Jobs of a study and what the tracking server already holds for each: done, to retry, or to run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from llmseg_mlflow.sweep.study import Study
from llmseg_mlflow.tracking.outage import is_tracking_outage
from llmseg_mlflow.tracking.schema import Kind, Status

BASELINE_MODEL = "nnunet-v2"
# Root statuses that are results of the study: never run again.
RESULTS = frozenset(
    {
        Status.SUCCEEDED.value,
        Status.GAVE_UP.value,
        Status.NO_CODE.value,
        Status.FAILED_TRAINING.value,
        Status.DISK_QUOTA.value,
        Status.STUCK_LOOP.value,
        Status.EVALUATION_FAILED.value,
    }
)
T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    """One unit of a sweep; its identity on the server is (study, model, dataset, repeat, budget, seed)."""

    kind: str  # generate | budget | seed | refine | baseline
    model: str  # the model key, as tagged on the runs
    dataset: str
    repeat: int
    budget: int | None = None  # forced epochs of a rerun (budget jobs, budget baselines)
    seed: int | None = None  # seeded retraining of the same code (seed jobs)
    rounds: int | None = None  # refinement rounds the source pipeline should have (refine jobs: no root of their own)

    @property
    def key(self) -> tuple[str, str, int, int | None, int | None, int | None]:
        """Identity within the study."""
        return (self.model, self.dataset, self.repeat, self.budget, self.seed, self.rounds)

    @property
    def source(self) -> Job | None:
        """The generate job a budget or seed rerun retrains, or a refine job continues."""
        if self.kind in ("budget", "seed", "refine"):
            return Job("generate", self.model, self.dataset, self.repeat)
        return None

    @property
    def label(self) -> str:
        """Short human name: model/dataset/rN[/bN][/sN]."""
        return (
            f"{self.model}/{self.dataset}/r{self.repeat}"
            + (f"/b{self.budget}" if self.budget else "")
            + (f"/s{self.seed}" if self.seed is not None else "")
            + (f"/refine{self.rounds}" if self.rounds else "")
        )


def expand(study: Study) -> list[Job]:
    """Every job of the study: generate, budget reruns, seed retrainings, baselines (the order they are submitted)."""
    jobs = [
        Job("generate", m.key, d, r)
        for d in study.datasets
        for m in study.models
        for r in range(1, study.repeats_for(m.key, d) + 1)
    ]
    for rerun in study.budget_reruns:
        jobs += [
            Job("budget", j.model, j.dataset, j.repeat, rerun.epochs)
            for j in list(jobs)
            if j.kind == "generate" and j.model in rerun.models and j.dataset in rerun.datasets
        ]
        if rerun.baseline:
            jobs += [Job("baseline", BASELINE_MODEL, d, 1, rerun.epochs) for d in rerun.datasets]
    if study.seeds is not None:
        picked = study.seeds
        jobs += [
            Job("seed", j.model, j.dataset, j.repeat, seed=s)
            for j in list(jobs)
            if j.kind == "generate" and j.model in picked.models and j.dataset in picked.datasets
            for s in range(picked.count)
        ]
    if study.refine is not None:
        picked_r = study.refine
        jobs += [
            Job("refine", j.model, j.dataset, j.repeat, rounds=picked_r.rounds)
            for j in list(jobs)
            if j.kind == "generate" and j.model in picked_r.models and j.dataset in picked_r.datasets
        ]
    jobs += [Job("baseline", BASELINE_MODEL, d, 1) for d in study.baselines.datasets]
    unique: dict[tuple, Job] = {}
    for job in jobs:
        unique.setdefault(job.key, job)  # two reruns at the same budget are one job
    return list(unique.values())


def retrying(fn: Callable[[], T], what: str, patience_s: float = 60.0) -> T:
    """Call fn, retrying for patience_s when the tracking server is briefly away."""
    delay, deadline = 1.0, time.monotonic() + patience_s
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - MlflowException, requests and OS errors all mean "away"
            if time.monotonic() > deadline or not is_tracking_outage(exc):
                raise
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


def root_key(run: Run) -> tuple[str, str, int, int | None, int | None, None] | None:
    """A pipeline root's identity from its tags (None when the tags are incomplete)."""
    tags = run.data.tags
    try:
        budget, seed = tags.get("budget"), tags.get("seed")
        return (
            tags["model"],
            tags["dataset"],
            int(tags["repeat"]),
            int(budget) if budget else None,
            int(seed) if seed else None,
            None,  # refine jobs add rounds under a root; no root is a refine job's own
        )
    except (KeyError, ValueError):
        return None


def is_result(run: Run) -> bool:
    """A root that holds a result of the study (FINISHED with a result status)."""
    return run.info.status == "FINISHED" and run.data.tags.get("status") in RESULTS


@dataclass
class JobState:
    """What the server holds for one job."""

    job: Job
    done: Run | None = None  # the root with the result
    stale: list[Run] = field(default_factory=list)  # roots a crash left RUNNING/FAILED: retried, then marked

    @property
    def state(self) -> str:
        """`done`, `retry` or `new`."""
        return "done" if self.done else "retry" if self.stale else "new"


class StudyRuns:
    """The study's pipeline roots on the tracking server, indexed by job identity."""

    def __init__(self, client: MlflowClient | None, experiment_id: str | None) -> None:
        # No client (a dry run without a tracking store) comes with no experiment: nothing is searched.
        self.client, self.experiment_id = client, experiment_id
        self.roots: dict[tuple, list[Run]] = {}

    def _server(self) -> MlflowClient:
        """The client, once there are runs to search or mark (an experiment id came from it)."""
        assert self.client is not None, "an experiment id without a tracking client"
        return self.client

    def load(self) -> StudyRuns:
        """One paged search of the experiment's `kind=pipeline` roots; superseded ones are left out."""
        self.roots = {}
        for run in self._search("tags.kind = 'pipeline'"):
            key = root_key(run)
            if key is not None and "superseded_by" not in run.data.tags:
                self.roots.setdefault(key, []).append(run)
        return self

    def _search(self, query: str) -> Iterable[Run]:
        if self.experiment_id is None:
            return []
        client = self._server()
        token: str | None = None
        out: list[Run] = []
        while True:
            page = retrying(
                partial(client.search_runs, [self.experiment_id], query, max_results=1000, page_token=token),
                "search runs",
            )
            out += list(page)
            token = page.token
            if not token:
                return out

    def state(self, job: Job) -> JobState:
        """Done, to retry, or new; for the baseline only roots tagged baseline=true count; a refine job is done
        when its source root has the rounds asked for."""
        if job.kind == "refine":
            assert job.source is not None and job.rounds is not None
            src = self.state(job.source).done
            rounds = src.data.metrics.get("refine_rounds", 0) if src else 0
            return JobState(job, done=src if src and rounds >= job.rounds else None)
        runs = [
            r
            for r in self.roots.get(job.key, [])
            if (r.data.tags.get("baseline") == "true") == (job.kind == "baseline")
        ]
        runs.sort(key=lambda r: r.info.start_time or 0)
        done = [r for r in runs if is_result(r)]
        return JobState(job, done=done[-1] if done else None, stale=[] if done else runs)

    def roots_of(self, job: Job) -> list[Run]:
        """Fresh from the server: the job's roots not yet superseded."""
        tags = {"kind": Kind.PIPELINE.value, "model": job.model, "dataset": job.dataset, "repeat": str(job.repeat)}
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        return [
            r
            for r in self._search(query)
            if root_key(r) == job.key
            and "superseded_by" not in r.data.tags
            and (r.data.tags.get("baseline") == "true") == (job.kind == "baseline")
        ]

    def supersede(self, job: Job, new_run_id: str) -> list[str]:
        """Mark every earlier non-result root of the job as superseded by new_run_id (kept, never deleted)."""
        marked = []
        for run in self.roots_of(job):
            if run.info.run_id == new_run_id or is_result(run):
                continue
            client = self._server()
            if run.info.status == "RUNNING":  # the driver that ran it died; it will never end by itself
                retrying(partial(client.set_terminated, run.info.run_id, "KILLED"), "end run")
            retrying(partial(client.set_tag, run.info.run_id, "superseded_by", new_run_id), "tag run")
            marked.append(run.info.run_id)
        return marked

    def newest_root(self, job: Job, since_ms: int) -> Run | None:
        """The root a job created (for jobs that died before returning their run id)."""
        runs = [r for r in self.roots_of(job) if (r.info.start_time or 0) >= since_ms]
        return max(runs, key=lambda r: r.info.start_time or 0) if runs else None
