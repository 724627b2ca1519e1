"""The pipeline run tree in MLflow: a root run and its nested children, all carrying the cohort tags."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow.artifacts
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.tracking.outage import OUTAGE_MARKER, server_error
from llmseg_mlflow.tracking.schema import Cohort, Kind
from llmseg_mlflow.untrusted import Caps, Skipped, copy_tree

_MAX_PARAM = 6000  # MLflow's limit on a param value; longer text belongs in artifacts
_BATCH = 900  # log_batch accepts at most 1000 metrics per call


# Drivers named by the `postgres` extra; any other database driver is named as itself.
_EXTRA_DRIVERS = {"psycopg": "llmseg-mlflow[postgres]", "psycopg2": "psycopg2-binary"}
_DATABASES = ("postgresql", "mysql", "mssql")


def check_tracking_server(timeout_s: float = 5.0) -> None:
    """Fail fast (OSError naming the URI) when the tracking server or database does not answer.

    MLflow itself retries an unreachable store for minutes: right for a store that goes away
    mid-study, wrong for a mistyped URI before the first job starts.
    """
    import urllib.request

    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith(_DATABASES):
        check_database(uri, timeout_s)
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return
    except OSError as exc:
        raise ConnectionError(  # is_tracking_outage knows it by its type here, by OUTAGE_MARKER elsewhere
            f"the MLflow tracking server at {uri} {OUTAGE_MARKER} ({exc}); start it "
            "(`mlflow server --host 127.0.0.1 --port 5000`) or point MLFLOW_TRACKING_URI elsewhere"
        ) from exc


def check_database(uri: str, timeout_s: float = 5.0) -> None:
    """One connection with a short timeout; a missing driver is named with what to install, a schema older
    than the installed MLflow with the upgrade command (MLflow would only fail at the first write)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    shown = url.render_as_string(hide_password=True)
    try:
        url.get_dialect().import_dbapi()
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        raise ValueError(
            f"the tracking URI {shown} needs the database driver {module!r}, which is not installed: "
            f"pip install '{_EXTRA_DRIVERS.get(module, module)}'"
        ) from None
    args = {"connect_timeout": max(1, int(timeout_s))} if url.get_backend_name() in ("postgresql", "mysql") else {}
    engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
        _check_schema(engine, shown)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConnectionError(
            f"the tracking database at {shown} {OUTAGE_MARKER} ({reason}); start it, or check the host, "
            "port, user and password in MLFLOW_TRACKING_URI"
        ) from None
    finally:
        engine.dispose()


def _check_schema(engine, uri: str) -> None:
    """UsageError with `mlflow db upgrade` when the store was made by an older MLflow (an empty one is fine)."""
    import mlflow

    from llmseg_mlflow.tracking.mlflow_api import schema_revisions

    found, head = schema_revisions(engine)
    if found is not None and found != head:  # None: a new database, whose tables MLflow creates on first use
        raise UsageError(
            f"the tracking database's schema is older than MLflow {mlflow.__version__} expects (revision {found}, "
            f"not {head}): back it up, then run `mlflow db upgrade '{uri}'` and start again"
        )


# MLflow 3's UI infers a GenAI (agent) project from the LLM traces and opens on trace charts; a study
# is model development: this opens it on the training runs. A kind the user set is kept.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
SOURCE_TAGS = {MLFLOW_SOURCE_NAME: "llmseg-mlflow", MLFLOW_SOURCE_TYPE: "LOCAL"}  # the UI's Source column


# How each store words "another writer created it first": MLflow's code, sqlite's and PostgreSQL's.
_DUPLICATE = re.compile(r"RESOURCE_ALREADY_EXISTS|already exists|unique constraint|duplicate key", re.IGNORECASE)


def lost_creation_race(exc: BaseException) -> bool:
    """True when a create failed because a parallel writer created the same thing first (on any store)."""
    return _DUPLICATE.search(str(exc)) is not None


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of the study's experiment, created on first use, marked as model development."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(
                name, artifact_location=artifact_location, tags={EXPERIMENT_KIND: MODEL_DEVELOPMENT}
            )
        except MlflowException as exc:  # two jobs of a new study at once: the other one created it
            if not lost_creation_race(exc):
                raise
            exp = client.get_experiment_by_name(name)
            assert exp is not None, f"experiment {name!r} was created and is gone"
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    mark_experiment(client, exp.experiment_id, exp.tags)
    return exp.experiment_id


def mark_experiment(client: MlflowClient, experiment_id: str, tags: Mapping[str, str] | None = None) -> None:
    """Set the experiment's kind to model development unless it has one."""
    if tags is None:
        tags = client.get_experiment(experiment_id).tags
    if EXPERIMENT_KIND not in tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, MODEL_DEVELOPMENT)


@dataclass
class RunLogger:
    """Write access to one run: batched params/metrics/tags, text and file artifacts."""

    client: MlflowClient
    run_id: str
    failed: bool = False  # a child run ends FAILED when this is set, though its block did not raise

    def tags(self, tags: Mapping[str, object]) -> None:
        """Set tags (values stringified)."""
        self._batch(tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def params(self, params: Mapping[str, object]) -> None:
        """Log params; None values are skipped, long values cut (full text belongs in artifacts)."""
        items = [Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items() if v is not None]
        self._batch(params=items)

    def metrics(
        self,
        metrics: Mapping[str, float | None],
        step: int = 0,
        model_id: str | None = None,
        dataset: tuple[str, str] | None = None,
    ) -> None:
        """Log scalar metrics at one step; None values are skipped. With model_id they are the LoggedModel's
        metrics too, on the dataset (name, digest) when given (search_logged_models ranks by them)."""
        now = int(time.time() * 1000)
        name, digest = dataset or (None, None)
        self._batch(
            metrics=[
                Metric(k, float(v), now, step, model_id=model_id, dataset_name=name, dataset_digest=digest)
                for k, v in metrics.items()
                if v is not None
            ]
        )

    def curve(self, key: str, values: list[float], first_step: int = 1) -> None:
        """Log a per-epoch series with step = epoch (1-based by default)."""
        now = int(time.time() * 1000)
        self._batch(metrics=[Metric(key, float(v), now, first_step + i) for i, v in enumerate(values)])

    def points(self, metrics: Sequence[Metric]) -> None:
        """Log metrics that carry their own step and timestamp (a series sampled while the code ran)."""
        self._batch(metrics=metrics)

    def text(self, text: str, artifact_file: str) -> None:
        """Store text as an artifact file."""
        self.client.log_text(self.run_id, text, artifact_file)

    def json(self, obj: object, artifact_file: str) -> None:
        """Store an object as a pretty JSON artifact."""
        self.text(json.dumps(obj, indent=2, default=str), artifact_file)

    def files(self, files: Mapping[str, str], artifact_dir: str) -> None:
        """Store a {name: text} mapping as files under artifact_dir."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                path = Path(tmp, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            self.client.log_artifacts(self.run_id, tmp, artifact_dir)

    def artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        """Upload a local file or folder the harness itself wrote (sandbox output: untrusted_artifact)."""
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_dir)
        elif path.exists():
            self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def untrusted_artifact(
        self, path: Path, artifact_dir: str | None = None, caps: Caps | None = None
    ) -> list[Skipped]:
        """Upload a folder (or one file) sandboxed code wrote: regular files only, within caps; returns the rest.

        Links (`env.txt -> /proc/self/environ`), FIFOs, devices and oversized files are not uploaded; they
        are listed in `{artifact_dir}/skipped_files.json`. The copy is what gets uploaded, so nothing the
        uploader opens by path can have been swapped for a link after the check.
        """
        with tempfile.TemporaryDirectory(prefix="llmseg-untrusted-") as tmp:
            listing = copy_tree(path, Path(tmp), caps or Caps())
            if listing.files:
                self.client.log_artifacts(self.run_id, tmp, artifact_dir)
        if listing.skipped:
            self.json(
                listing.skipped_json(), f"{artifact_dir}/skipped_files.json" if artifact_dir else "skipped_files.json"
            )
        return listing.skipped

    def _batch(self, metrics: Sequence[Metric] = (), params: Sequence[Param] = (), tags: Sequence[RunTag] = ()) -> None:
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            self.client.log_batch(self.run_id, metrics=metrics[:_BATCH], params=params[:100], tags=tags[:100])
            metrics, params, tags = metrics[_BATCH:], params[100:], tags[100:]


@dataclass
class RunTree:
    """One pipeline's root run and a factory for its children."""

    client: MlflowClient
    experiment_id: str
    cohort: Cohort
    root: RunLogger
    children: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, client: MlflowClient, cohort: Cohort, artifact_location: str | None = None) -> RunTree:
        """Create the root run in the study's experiment.

        Under `mlflow run`, the run it started already holds the entry point's params (`epochs` = the
        user's request), which would collide with the root's `epochs` = the LLM's choice; so that run
        becomes a `kind=launch` parent and the pipeline root is nested under it, in its experiment.
        """
        tags = {**cohort.tags(Kind.PIPELINE), MLFLOW_RUN_NAME: cohort.run_name, **SOURCE_TAGS}
        launch = os.environ.get("MLFLOW_RUN_ID")
        if launch:
            exp_id = client.get_run(launch).info.experiment_id
            mark_experiment(client, exp_id)
            tags[MLFLOW_PARENT_RUN_ID] = launch
        else:
            exp_id = ensure_experiment(client, cohort.study, artifact_location)
        run_id = client.create_run(exp_id, tags=tags, run_name=cohort.run_name).info.run_id
        if launch:
            RunLogger(client, launch).tags({**cohort.tags(Kind.LAUNCH), "pipeline_run_id": run_id})
        return cls(client, exp_id, cohort, RunLogger(client, run_id))

    @classmethod
    def attach(cls, client: MlflowClient, root_run_id: str) -> RunTree:
        """The tree of an existing pipeline root (to add an evaluation to it later)."""
        run = client.get_run(root_run_id)
        tags = run.data.tags
        if tags.get("kind") != Kind.PIPELINE.value:
            raise ValueError(
                f"run {root_run_id} is not a pipeline root (kind={tags.get('kind')!r}); "
                "pass the run id of a `kind=pipeline` run"
            )
        cohort = Cohort.from_tags(tags)
        return cls(client, run.info.experiment_id, cohort, RunLogger(client, root_run_id))

    @contextmanager
    def child(self, kind: Kind, name: str, tags: Mapping[str, object] | None = None) -> Iterator[RunLogger]:
        """A nested run with the cohort tags; FAILED if the block raises or sets `failed`, FINISHED otherwise."""
        all_tags = {
            **self.cohort.tags(kind),
            MLFLOW_PARENT_RUN_ID: self.root.run_id,
            MLFLOW_RUN_NAME: name,
            **{k: str(v) for k, v in (tags or {}).items()},
        }
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        self.children.append(run.info.run_id)
        logger = RunLogger(self.client, run.info.run_id)
        try:
            yield logger
        except BaseException:
            self.client.set_terminated(run.info.run_id, "FAILED")
            raise
        self.client.set_terminated(run.info.run_id, "FAILED" if logger.failed else "FINISHED")

    def finish(self, failed: bool = False) -> None:
        """End the root run (a launch run started by `mlflow run` is ended by mlflow itself)."""
        self.client.set_terminated(self.root.run_id, "FAILED" if failed else "FINISHED")

    def fail_harness(self, exc: BaseException) -> str:
        """Mark the root FAILED with status=harness_error and a one-line reason; never raises.

        The platform failed, not the pipeline: whatever was logged before stays, the full traceback is
        kept as `harness_error.txt`, and each step is tried on its own (the server may be the failure).
        """
        import traceback

        reason = _server_failed(exc) or f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:250]
        steps = (
            lambda: self.root.tags({"status": "harness_error", "error": reason}),
            lambda: self.root.text("".join(traceback.format_exception(exc)), "harness_error.txt"),
            lambda: self.finish(failed=True),
        )
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - best effort: the caller still reports the reason
                pass
        return reason


def _server_failed(exc: BaseException) -> str | None:
    """server_error's line, asking the server whether it is up when the failure alone cannot tell."""
    found = server_error(exc)
    if found is not None:
        return found
    if (if_up := server_error(exc, server_answers=True)) is None:
        return None
    try:
        check_tracking_server(timeout_s=3)
    except Exception:  # noqa: BLE001 - it is away: an outage after all
        return None
    return if_up


def baseline_roots(
    client: MlflowClient, experiment_id: str, dataset: str, data_digest: str, budget: str | None = None
) -> list[Run]:
    """The succeeded nnU-Net baseline roots of one split (dataset, prepared `data_digest`) in the experiment,
    newest first; `budget`: those forced to that epoch budget (None: the baseline's own budget)."""
    found = client.search_runs(
        [experiment_id],
        f"tags.kind = '{Kind.PIPELINE.value}' and tags.baseline = 'true' and tags.dataset = '{dataset}' "
        f"and tags.status = 'succeeded' and params.data_digest = '{data_digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    return [r for r in found if r.data.tags.get("budget") == budget]


def logged_code(client: MlflowClient, run_id: str) -> dict[str, str]:
    """A pipeline's final code (the run's `code/` artifacts); UsageError when it has none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="code", dst_path=tmp))
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing path
            raise UsageError(
                f"pipeline {run_id} has no final code (`code/` artifact): it never produced a "
                f"pipeline, so there is no code to re-train or refine ({type(exc).__name__})"
            ) from None
        return {p.name: p.read_text() for p in sorted(folder.glob("*.py"))}
