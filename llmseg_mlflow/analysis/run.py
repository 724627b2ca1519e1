"""The `analyze` driver: fetch the study (cached), build every output, write index.html, log a kind=analysis run."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from tqdm import tqdm

from llmseg_mlflow.analysis.build import (
    CURVE_SECTIONS,
    DICE_SECTIONS,
    ROOT_SECTIONS,
    RULES,
    Context,
    prefetch_grids,
    section_data,
    section_qualitative,
)
from llmseg_mlflow.analysis.cache import RunCache, default_cache_dir
from llmseg_mlflow.analysis.config import AnalyzeConfig, load_cohorts
from llmseg_mlflow.analysis.fetch import Root
from llmseg_mlflow.analysis.listing import list_roots
from llmseg_mlflow.analysis.memo import SectionMemo, study_key
from llmseg_mlflow.analysis.outputs import Outputs, render_pool
from llmseg_mlflow.analysis.publish import Publisher
from llmseg_mlflow.analysis.recorded import load_recorded
from llmseg_mlflow.analysis.report import write_report
from llmseg_mlflow.analysis.series import SeriesFetch
from llmseg_mlflow.analysis.table import StudyData, build_study, summaries_need_series
from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.paths import data_root
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


def _clear(folder: Path) -> None:
    for name in _OWNED:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _analysis_run(client: MlflowClient, cfg: AnalyzeConfig, roots: list[Root]) -> tuple[str, bool]:
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
        exp_id = Counter(r.experiment_id for r in roots).most_common(1)[0][0]
    run = client.create_run(
        exp_id, tags={**tags, MLFLOW_RUN_NAME: f"analysis/{cfg.study}"}, run_name=f"analysis/{cfg.study}"
    )
    return run.info.run_id, True


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
    if cfg.recorded_errors is not None:  # a bad CSV fails here, before minutes of fetching
        load_recorded(cfg.recorded_errors)
    cache = RunCache(cfg.cache_dir or default_cache_dir(uri, cfg.study))
    roots, how = list_roots(client, cfg.study, cache.folder, refresh=cfg.refresh)
    progress(how)
    done("list")
    found = len(roots)
    roots = [r for r in roots if _keep(r, cfg)]
    if not roots:
        filt = " matching --datasets/--models" if (cfg.datasets or cfg.models) and found else ""
        raise UsageError(
            f"no pipeline runs of study {cfg.study!r}{filt} on the tracking server {uri} (found {found} "
            "in the study); run `llmseg generate --study ...` first, or pick the study with --study "
            "and the server with MLFLOW_TRACKING_URI"
        )
    progress(f"found {len(roots)} pipeline root(s) of study {cfg.study!r} on {uri}")

    out_dir = Path(cfg.output).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    run_id, owned, publisher = None, False, None
    if cfg.log_run:  # created first, so each output is logged as soon as it is final
        run_id, owned = _analysis_run(client, cfg, roots)
        publisher = Publisher(client, run_id, out_dir)
    try:
        out = Outputs(out_dir, cache, pool=pool, published=publisher.add if publisher else None)
        # Uploads start once the series are in: until then they would only hold the server up.
        fetch = SeriesFetch(roots, cache, progress, on_done=publisher.open if publisher else None)
        try:
            if summaries_need_series(roots):  # some Dice summaries come from the per-image scores: wait for them
                fetch.wait(0)
                fetch.wait(1)
            ctx = Context(
                build_study(roots, fetch.series, cohorts.overrides),
                cfg,
                cohorts,
                out,
                client,
                cache,
                data_root(cfg.data_root),
                progress,
            )
            ctx.memo = SectionMemo(cache, study_key(roots, ctx.data.series_digest(), cfg, cohorts))
            _build_sections(ctx, fetch, done)
            if ctx.memo.replayed:
                progress(f"{ctx.memo.replayed} section(s) reused from an earlier analyze of this unchanged study")
        finally:
            fetch.close()
        section_data(ctx)  # data/curves.csv and per_image.csv, with every curve
        report = write_report(
            out, f"llmseg analysis: {cfg.study}", _intro(cfg, uri, ctx.data), RULES, out_dir / "index.html"
        )
        done("write")
        if publisher is not None:
            assert run_id is not None  # the publisher logs to the analysis run
            study = ctx.data.study()
            logger = RunLogger(client, run_id)
            # Prefixed: under `mlflow run` the run already holds the entry point's params under the plain names.
            logger.params(
                {
                    "analysis.study": cfg.study,
                    "analysis.datasets": ",".join(cfg.datasets) or "all",
                    "analysis.models": ",".join(cfg.models) or "all",
                    "analysis.alpha": cfg.alpha,
                    "analysis.bonferroni": cfg.bonferroni,
                    "analysis.cohorts_file": cfg.cohorts_file or "default",
                }
            )
            logger.tags({"report": str(report)})
            sent = publisher.finish(_OWNED)
            done("log")
            logger.metrics(
                {
                    "pipelines": len(study),
                    "models": study.model.nunique(),
                    "datasets": study.dataset.nunique(),
                    "never_ran": int(study.heldout_dice_mean.isna().sum()),
                    "runs_fetched": fetch.fetched,
                    "runs_cached": len(roots) - fetch.fetched,
                    "sections_reused": ctx.memo.replayed,
                    **{f"time_{k}_s": v for k, v in laps.items()},
                }
            )
            if owned:
                client.set_terminated(run_id, "FINISHED")
            progress(f"logged the {sent} outputs as artifacts of run {run_id} (kind=analysis)")
    except BaseException:
        if owned and run_id is not None:  # what was logged stays; the run says it did not finish
            with contextlib.suppress(Exception):  # (a server that is gone: the first error is the one to see)
                client.set_terminated(run_id, "FAILED")
        raise
    finally:
        if publisher is not None:
            publisher.close()
    progress(
        f"{len(out.tables)} tables, {len(out.figures)} figures in {time.monotonic() - start:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in laps.items())
        + ")"
    )
    progress(f"report: {report}")
    return report


def _build_sections(ctx: Context, fetch: SeriesFetch, done) -> None:
    """Each part of the report, built (and rendered aside) as soon as what it needs has arrived, while the
    server serves the next stage: roots alone, then validation loss, then per-image Dice."""
    if ctx.data.study().empty:
        ctx.say("only baseline or budget runs in this selection: most tables will be empty")
    with (
        tqdm(
            total=len(ROOT_SECTIONS) + len(CURVE_SECTIONS) + len(DICE_SECTIONS) + 1,
            desc="report sections",
            unit="section",
        ) as bar,
        ThreadPoolExecutor(1) as aside,
    ):

        def build(sections) -> None:
            for section in sections:
                ctx.build(section)
                bar.update()

        build(ROOT_SECTIONS)
        done("roots")
        fetch.wait(0)
        done("wait_curves")
        build(CURVE_SECTIONS)
        done("curves")
        fetch.wait(1)
        done("wait_dice")
        # The grids' predictions download while the other Dice sections are built; once they are in, the
        # server takes the last curves.
        grids = aside.submit(prefetch_grids, ctx)
        grids.add_done_callback(lambda _: fetch.start_rest())
        build(DICE_SECTIONS)
        grids.result()
        ctx.build(section_qualitative, ctx.prepared_stamps())  # it also shows the prepared images
        bar.update()
        done("dice")
    ctx.out.finish()  # the figures still being drawn, while the other curves arrive
    done("draw")
    fetch.finish()
    done("wait_rest")


def _intro(cfg: AnalyzeConfig, uri: str, data: StudyData) -> list[str]:
    """The report's opening lines: what was analyzed, what was left out, with which settings."""
    study = data.study()
    return [
        f"Study {cfg.study!r} on {uri}: {len(study)} pipeline(s) of {study.model.nunique()} model(s) on "
        f"{study.dataset.nunique()} dataset(s), up to {int(study.repeat.max()) if len(study) else 0} repeat(s); "
        f"{len(data.of_role('baseline'))} baseline root(s), {len(data.of_role('budget'))} budget rerun(s).",
        f"{int(study.heldout_dice_mean.isna().sum())} pipeline(s) have no held-out Dice (never ran or not evaluated): "
        "they count in error tables and are left out of Dice statistics.",
        f"Filters: datasets={list(cfg.datasets) or 'all'}, models={list(cfg.models) or 'all'}; alpha={cfg.alpha}"
        f"{' with Bonferroni' if cfg.bonferroni else ''}; cohorts: {cfg.cohorts_file or 'year 2024 vs 2025, reasoning'}.",
    ]
