"""The `analyze` driver: fetch the study (cached), build every output, write index.html, log a kind=analysis run."""
from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from tqdm import tqdm

from llmseg_mlflow.analysis.build import RULES, SECTIONS, Context, section_data, section_qualitative
from llmseg_mlflow.analysis.cache import RunCache, RunSeries, default_cache_dir
from llmseg_mlflow.analysis.config import AnalyzeConfig, load_cohorts
from llmseg_mlflow.analysis.fetch import HistoryFetcher, Root
from llmseg_mlflow.analysis.listing import list_roots
from llmseg_mlflow.analysis.outputs import Outputs, render_pool
from llmseg_mlflow.analysis.report import write_report
from llmseg_mlflow.analysis.table import IMAGE_DICE, SERIES_KEYS, StudyData, build_study, latest_per_step
from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.tracking.runs import RunLogger, check_tracking_server
from llmseg_mlflow.tracking.schema import Kind

# What analyze owns in the output folder (cleared first, so no stale figure of an earlier analyze survives).
_OWNED = ("index.html", "cohort_tests.csv", "tables", "figures", "data")


def _keep(run: Root, cfg: AnalyzeConfig) -> bool:
    tags = run.tags
    if cfg.datasets and tags.get("dataset") not in cfg.datasets:
        return False
    baseline = tags.get("baseline", "").lower() == "true"
    return baseline or not cfg.models or tags.get("model") in cfg.models


# Figures need the validation loss and per-image Dice; the other curves only go to data/curves.csv, so they
# are fetched in the background while the figures are drawn (the server works while the client draws).
PRIMARY = ("val_loss", IMAGE_DICE)
SECONDARY = tuple(k for k in SERIES_KEYS if k not in PRIMARY)


def _group_points(points) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    by_run: dict[str, list] = {}
    for run_id, step, value, timestamp in points:
        by_run.setdefault(run_id, []).append((step, value, timestamp))
    out = {}
    for run_id, pts in by_run.items():
        arr = np.asarray(pts, dtype=float)
        out[run_id] = latest_per_step(arr[:, 0].astype(int), arr[:, 1], arr[:, 2])
    return out


def fetch_series(roots: list[Root], cache: RunCache, say: Callable[[str], None]
                 ) -> tuple[dict[str, RunSeries], int, tuple[Callable[[], None], Callable[[], None]]]:
    """Each root's curves and per-image Dice: from the cache when unchanged, else in bulk from the server.

    Returns the series (validation loss and per-image Dice filled in), how many runs were fetched, and two
    functions: one starts fetching the other curves in the background, one waits for them and saves the cache.
    """
    from concurrent.futures import ThreadPoolExecutor

    from llmseg_mlflow.analysis.cache import fingerprint

    series: dict[str, RunSeries] = {}
    todo: list[Root] = []
    for run in roots:
        hit = cache.get(run)
        if hit is not None:
            series[run.run_id] = hit
        else:
            todo.append(run)
    if not todo:
        say(f"all {len(roots)} run(s) unchanged since the last analyze: using the local cache")
        return series, 0, (lambda: None, lambda: None)
    fetcher = HistoryFetcher()
    epochs = max([int(r.metrics.get("epochs_trained", 0)) for r in todo] + [1])
    images = max([int(r.metrics.get("heldout_n", 0)) for r in todo] + [1])

    def wanted(keys: tuple[str, ...]) -> dict[str, tuple[list[str], int]]:
        return {k: ([r.run_id for r in todo if k in r.metrics], images if k == IMAGE_DICE else epochs) for k in keys}

    first, later = wanted(PRIMARY), wanted(SECONDARY)
    say(f"fetching curves and per-image Dice of {len(todo)} run(s) in bulk ({len(roots) - len(todo)} cached)")
    for run in todo:
        series[run.run_id] = RunSeries(fingerprint(run), {})
    total = sum(len(ids) for ids, _ in first.values())
    with tqdm(total=total, desc="metric histories", unit="run", disable=total == 0) as bar:
        for key, points in fetcher.fetch(first, progress=bar.update).items():
            for run_id, xy in _group_points(points).items():
                series[run_id].series[key] = xy
    pool = ThreadPoolExecutor(1)
    future = None

    def start() -> None:
        nonlocal future
        future = pool.submit(lambda: {k: _group_points(p) for k, p in fetcher.fetch(later).items()})

    def finish() -> None:
        if future is None:
            start()
        for key, by_run in future.result().items():
            for run_id, xy in by_run.items():
                series[run_id].series[key] = xy
        pool.shutdown()
        for run in todo:
            cache.put(run, series[run.run_id])
        cache.save()

    return series, len(todo), (start, finish)


def _clear(folder: Path) -> None:
    for name in _OWNED:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _analysis_run(client: MlflowClient, cfg: AnalyzeConfig, data: StudyData) -> tuple[str, bool]:
    """The kind=analysis run: the one `mlflow run` started, else a new one in the study's experiment."""
    tags = {"kind": Kind.ANALYSIS.value, "study": cfg.study}
    launch = os.environ.get("MLFLOW_RUN_ID")
    if launch:
        RunLogger(client, launch).tags(tags)
        return launch, False
    exp = client.get_experiment_by_name(cfg.study)
    if exp is not None and exp.lifecycle_stage == "active":
        exp_id = exp.experiment_id
    else:  # the study's pipelines live in an experiment `mlflow run` chose: log beside them
        exp_id = data.pipelines.experiment_id.mode().iloc[0]
    run = client.create_run(exp_id, tags={**tags, MLFLOW_RUN_NAME: f"analysis/{cfg.study}"},
                            run_name=f"analysis/{cfg.study}")
    return run.info.run_id, True


def _upload(client: MlflowClient, run_id: str, folder: Path) -> None:
    """Every output file as an artifact (parallel: one request per file is the slow part)."""
    files = [p for name in _OWNED for p in ([folder / name] if (folder / name).is_file() else
                                            sorted((folder / name).rglob("*")) if (folder / name).is_dir() else [])
             if p.is_file()]

    def one(path: Path) -> None:
        rel = path.parent.relative_to(folder).as_posix()
        client.log_artifact(run_id, str(path), None if rel == "." else rel)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, files))


def run_analyze(cfg: AnalyzeConfig, progress: Callable[[str], None] = print) -> Path:
    """Analyze the study on the tracking server; returns the path of the report's index.html."""
    start = lap = time.monotonic()
    laps: dict[str, float] = {}

    def done(phase: str) -> None:  # seconds per phase, printed at the end and logged as metrics
        nonlocal lap
        now = time.monotonic()
        laps[phase], lap = now - lap, now

    check_tracking_server()
    pool = render_pool()
    try:
        return _analyze(cfg, progress, pool, start, done, laps)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _analyze(cfg: AnalyzeConfig, progress: Callable[[str], None], pool, start: float, done, laps) -> Path:
    client = MlflowClient()
    uri = mlflow.get_tracking_uri()
    cohorts = load_cohorts(cfg.cohorts_file)
    cache = RunCache(cfg.cache_dir or default_cache_dir(uri, cfg.study))
    roots, how = list_roots(client, cfg.study, cache.folder, refresh=cfg.refresh)
    progress(how)
    done("list")
    found = len(roots)
    roots = [r for r in roots if _keep(r, cfg)]
    if not roots:
        filt = " matching --datasets/--models" if (cfg.datasets or cfg.models) and found else ""
        raise UsageError(f"no pipeline runs of study {cfg.study!r}{filt} on the tracking server {uri} (found {found} "
                         "in the study); run `llmseg generate --study ...` first, or pick the study with --study "
                         "and the server with MLFLOW_TRACKING_URI")
    progress(f"found {len(roots)} pipeline root(s) of study {cfg.study!r} on {uri}")
    from llmseg_mlflow.generate import llmseg_home

    series, fetched, (start_rest, rest_of_series) = fetch_series(roots, cache, progress)
    done("fetch")
    data = build_study(roots, series, cohorts.overrides)
    if data.study().empty:
        progress("only baseline or budget runs in this selection: most tables will be empty")
    out_dir = Path(cfg.output).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    out = Outputs(out_dir, cache, pool=pool)
    ctx = Context(data, cfg, cohorts, out, client, cache, Path(cfg.data_root or llmseg_home() / "data"), progress)
    # The grids' downloads first, while the server has nothing else to do; then the other curves in the
    # background while the rest is computed and drawn.
    order = [section_qualitative] + [s for s in SECTIONS if s not in (section_qualitative, section_data)]
    for i, section in enumerate(tqdm(order, desc="report sections", unit="section")):
        section(ctx)
        if i == 0:
            start_rest()
    done("compute")
    out.finish()  # draws the figures while the other curves arrive
    done("draw")
    rest_of_series()
    done("fetch_rest")
    section_data(ctx)  # the tidy table and data/curves.csv, with every curve
    study = data.study()
    intro = [
        f"Study {cfg.study!r} on {uri}: {len(study)} pipeline(s) of {study.model.nunique()} model(s) on "
        f"{study.dataset.nunique()} dataset(s), up to {int(study.repeat.max()) if len(study) else 0} repeat(s); "
        f"{len(data.of_role('baseline'))} baseline root(s), {len(data.of_role('budget'))} budget rerun(s).",
        f"{int(study.heldout_dice_mean.isna().sum())} pipeline(s) have no held-out Dice (never ran or not evaluated): "
        "they count in error tables and are left out of Dice statistics.",
        f"Filters: datasets={list(cfg.datasets) or 'all'}, models={list(cfg.models) or 'all'}; alpha={cfg.alpha}"
        f"{' with Bonferroni' if cfg.bonferroni else ''}; cohorts: {cfg.cohorts_file or 'year 2024 vs 2025, reasoning'}.",
    ]
    out.finish()
    report = write_report(out, f"llmseg analysis: {cfg.study}", intro, RULES, out_dir / "index.html")
    done("write")
    if cfg.log_run:
        run_id, owned = _analysis_run(client, cfg, data)
        logger = RunLogger(client, run_id)
        # Prefixed: under `mlflow run` the run already holds the entry point's params under the plain names.
        logger.params({"analysis.study": cfg.study, "analysis.datasets": ",".join(cfg.datasets) or "all",
                       "analysis.models": ",".join(cfg.models) or "all", "analysis.alpha": cfg.alpha,
                       "analysis.bonferroni": cfg.bonferroni, "analysis.cohorts_file": cfg.cohorts_file or "default"})
        logger.metrics({"pipelines": len(study), "models": study.model.nunique(), "datasets": study.dataset.nunique(),
                        "never_ran": int(study.heldout_dice_mean.isna().sum()), "runs_fetched": fetched,
                        "runs_cached": len(roots) - fetched, **{f"time_{k}_s": v for k, v in laps.items()}})
        logger.tags({"report": str(report)})
        _upload(client, run_id, out_dir)
        if owned:
            client.set_terminated(run_id, "FINISHED")
        progress(f"logged the outputs as artifacts of run {run_id} (kind=analysis)")
        done("log")
    progress(f"{len(out.tables)} tables, {len(out.figures)} figures in {time.monotonic() - start:.1f} s ("
             + ", ".join(f"{k} {v:.1f} s" for k, v in laps.items()) + ")")
    progress(f"report: {report}")
    return report
