"""`analyze` end to end on a real tracking server: exact statistics, every output, the cache, filters, the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from scipy.stats import mannwhitneyu

from llmseg_mlflow.analysis import AnalyzeConfig, run_analyze
from llmseg_mlflow.analysis.cohort_ci import CI_COLUMNS
from llmseg_mlflow.analysis.stats import holm
from llmseg_mlflow.analysis.synthetic_study import reevaluate
from llmseg_mlflow.cli import main
from tests.analysis.conftest import KNOWN, MODELS, OFF_DISK, ON_DISK

YEAR = {m.key: str(m.year) for m in MODELS}
REASONING = {m.key: str(m.reasoning).lower() for m in MODELS}


def _analyze(study, tmp_path: Path, name: str = "report", **kw) -> tuple[Path, list[str]]:
    lines: list[str] = []
    cfg = AnalyzeConfig(
        study=study.name,
        output=tmp_path / name,
        data_root=study.data_root,
        cache_dir=kw.pop("cache_dir", tmp_path / "cache"),
        **kw,
    )
    return run_analyze(cfg, progress=lines.append), lines


def _expected(comparison: str) -> tuple[float, float]:
    """scipy on per-model means of the known per-image scores, computed without the package."""
    groups = YEAR if comparison == "year" else REASONING
    a_val, b_val = ("2024", "2025") if comparison == "year" else ("false", "true")
    means: dict[str, list[float]] = {}
    for (model, repeat), scores in KNOWN.items():
        if (model, repeat) != ("a24", 2):  # never ran
            means.setdefault(model, []).append(float(np.mean(scores)))
    per_model = {m: float(np.mean(v)) for m, v in means.items()}
    a = [v for m, v in per_model.items() if groups[m] == a_val]
    b = [v for m, v in per_model.items() if groups[m] == b_val]
    res = mannwhitneyu(b, a, alternative="greater")
    return float(res.statistic), float(res.pvalue)


def test_cohort_tests_equal_scipy_on_known_dice_and_every_output_is_written(on_server, tmp_path):
    report, lines = _analyze(on_server, tmp_path)
    out = report.parent
    tests = pd.read_csv(out / "cohort_tests.csv")
    assert list(tests.columns[:17]) == [
        "dataset",
        "comparison",
        "group_a",
        "group_b",
        "n_a",
        "n_b",
        "median_a",
        "q1_a",
        "q3_a",
        "median_b",
        "q1_b",
        "q3_b",
        "delta_median",
        "U",
        "p",
        "significant",
        "effect_size",
    ]
    assert len(tests) == 4  # 2 datasets x (year, reasoning)
    assert list(tests.columns[17:]) == ["p_adjusted", "left_out_a", "left_out_b", *CI_COLUMNS]
    assert tests.p_holm.tolist() == pytest.approx(holm(tests.p.to_numpy()).tolist())
    # 2 models in 2024 and 2 reasoning models: every row runs its test and says why it has no CI
    assert tests.note.str.startswith("n too small: ").all() and tests.delta_ci_low.isna().all()
    ranks = pd.read_csv(out / "tables" / "ranking_stability.csv")
    assert set(ranks[ranks.dataset == OFF_DISK].model) == set(YEAR)  # a24 ran once there: it is ranked
    assert ranks[ranks.dataset == OFF_DISK].note.str.startswith("n too small: 3 image(s)").all()
    on = ranks[ranks.dataset == ON_DISK]
    assert len(on) == len(YEAR) and on.note.isna().all() and on.keep_rank.between(0, 1).all()
    for comparison in ("year", "reasoning"):
        row = tests[(tests.dataset == OFF_DISK) & (tests.comparison == comparison)].iloc[0]
        U, p = _expected(comparison)
        assert round(row.U, 4) == round(U, 4) and round(row.p, 4) == round(p, 4)
        assert any(re.search(rf"{OFF_DISK} {comparison}: .*U={U:.4f} p={p:.4f}", line) for line in lines), lines
        assert row.significant == (p < 0.05)
    year = tests[(tests.dataset == OFF_DISK) & (tests.comparison == "year")].iloc[0]
    pooled_2024 = [s for (m, r), v in KNOWN.items() if YEAR[m] == "2024" and (m, r) != ("a24", 2) for s in v]
    assert year.median_a == pytest.approx(np.median(pooled_2024))
    assert year.left_out_a == 1 and year.left_out_b == 0  # the pipeline that never ran is counted, not tested

    figures = {p.stem for p in (out / "figures").glob("*.png")}
    for ds in (ON_DISK, OFF_DISK):
        assert {
            f"val_loss_{ds}",
            f"cohort_val_loss_{ds}",
            f"dice_{ds}",
            f"qualitative_{ds}",
            f"variability_dice_{ds}",
            f"variability_loss_{ds}",
        } <= figures
    assert f"ranking_{ON_DISK}" in figures and f"ranking_{OFF_DISK}" not in figures
    assert {"errors_by_type", f"budget_{ON_DISK}", "cost"} <= figures
    for table in (
        "errors_by_model",
        "errors_by_cohort",
        "fix_rounds",
        "architecture_2024",
        "architecture_2025",
        "training_time",
        "cohort_tests",
        "variability_spread",
        "variability_configs",
        "variability_tests",
        "budget",
        "compliance",
        "cost",
        "never_ran",
        "pipelines",
        "dice_per_model",
        "ranking_stability",
        "ranking_pairs",
    ):
        for ext in ("csv", "xlsx", "md"):
            assert (out / "tables" / f"{table}.{ext}").is_file(), (table, ext)
    never = pd.read_csv(out / "tables" / "never_ran.csv")
    assert list(zip(never.model, never.dataset, never.repeat)) == [("a24", OFF_DISK, 2)]
    tidy = pd.read_csv(out / "tables" / "pipelines.csv")
    assert len(tidy[tidy.role == "pipeline"]) == 20 and (tidy.role == "baseline").sum() == 2
    assert (tidy.role == "budget").sum() == 6 and tidy[tidy.role == "budget"].is_baseline.sum() == 1
    errors = pd.read_csv(out / "tables" / "errors_by_model.csv").set_index("model")
    written = {
        m: sum(sum(p.errors.values()) for p in on_server.pipelines if p.model == m and p.budget is None) for m in YEAR
    }
    assert errors.errors_total.to_dict() == written  # the never-ran pipeline's errors count too

    html = report.read_text()
    assert html.count('src="data:image/png;base64,') == len(figures)
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)  # opens offline
    assert "SD" in html and "never ran" in html.lower()
    grid_on = html.split(f'id="figure-qualitative_{ON_DISK}"')[1].split("</div>")[0]
    assert "Image and ground truth not shown" not in grid_on
    grid_off = html.split(f'id="figure-qualitative_{OFF_DISK}"')[1].split("</div>")[0]
    assert "not prepared" in grid_off or "not available" in grid_off

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(on_server.name).experiment_id], "tags.kind = 'analysis'")
    assert runs and runs[0].info.status == "FINISHED"
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert _logged_files(client, runs[0].info.run_id) == written  # every output, each once
    assert {"index.html", "cohort_tests.csv", "data/curves.csv", "tables/pipelines.xlsx"} <= written


def _logged_files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= _logged_files(client, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_an_analyze_that_fails_leaves_its_run_failed(on_server, tmp_path, monkeypatch):
    import llmseg_mlflow.analysis.run as run_mod

    def broken(ctx):
        raise RuntimeError("a section broke")

    monkeypatch.setattr(run_mod, "DICE_SECTIONS", (*run_mod.DICE_SECTIONS, broken))
    client = MlflowClient()
    exp = client.get_experiment_by_name(on_server.name).experiment_id
    before = {r.info.run_id for r in client.search_runs([exp], "tags.kind = 'analysis'")}
    with pytest.raises(RuntimeError, match="a section broke"):
        _analyze(on_server, tmp_path, "broken", cache_dir=tmp_path / "c")
    new = [r for r in client.search_runs([exp], "tags.kind = 'analysis'") if r.info.run_id not in before]
    assert len(new) == 1 and new[0].info.status == "FAILED"


def test_second_analyze_fetches_nothing_and_a_reevaluation_is_fetched_again(on_server, tmp_path):
    cache = tmp_path / "cache"
    _, cold = _analyze(on_server, tmp_path, "r1", cache_dir=cache, log_run=False)
    assert any("in bulk (0 cached)" in line for line in cold)
    assert not any("section(s) reused" in line for line in cold)
    _, warm = _analyze(on_server, tmp_path, "r2", cache_dir=cache, log_run=False)
    assert any("unchanged since the last analyze" in line for line in warm), warm
    # Nothing changed: the sections are replayed, and every table, figure and the report come out the same.
    assert any(line.startswith("18 section(s) reused") for line in warm), warm
    first, second = tmp_path / "r1", tmp_path / "r2"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file() and p.suffix != ".xlsx")
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file() and p.suffix != ".xlsx")
    for rel in files:
        if rel.name != "index.html":  # it names its own folder
            assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    assert (first / "index.html").read_text().replace(str(first), str(second)) == (second / "index.html").read_text()
    target = next(p for p in on_server.pipelines if (p.model, p.dataset, p.repeat) == ("c25", OFF_DISK, 1))
    new = (0.11, 0.22, 0.33)
    try:
        reevaluate(MlflowClient(), target, new, on_server.name)
        report, third = _analyze(on_server, tmp_path, "r3", cache_dir=cache, log_run=False)
        assert any("of 1 run(s) in bulk" in line for line in third), third
        per_image = pd.read_csv(report.parent / "data" / "per_image.csv")
        got = per_image[per_image.run_id == target.run_id].sort_values("index").dice.round(6).tolist()
        assert got == list(new)  # the latest evaluation's scores, not both
        # A changed run changes the study: no section is replayed from before, and the tables show the change.
        assert not any("section(s) reused" in line for line in third), third
        dice = pd.read_csv(report.parent / "tables" / "dice_per_model.csv")
        before = pd.read_csv(tmp_path / "r2" / "tables" / "dice_per_model.csv")
        assert not dice.equals(before)
    finally:
        reevaluate(MlflowClient(), target, KNOWN[("c25", 1)], on_server.name)  # other tests expect the known values


def test_cli_filters_datasets_and_models_and_keeps_the_baseline(on_server, tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(
        main,
        [
            "analyze",
            "--study",
            on_server.name,
            "--output",
            str(out),
            "--datasets",
            OFF_DISK,
            "--models",
            "a24,c25",
            "--no-log",
            "--cache-dir",
            str(tmp_path / "c"),
            "--alpha",
            "0.1",
            "--bonferroni",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == str(out.resolve() / "index.html")
    tidy = pd.read_csv(out / "tables" / "pipelines.csv")
    assert set(tidy.model) == {"a24", "c25", "nnunet-v2"} and set(tidy.dataset) == {OFF_DISK}
    tests = pd.read_csv(out / "tables" / "cohort_tests.csv")
    assert (tests.p_adjusted == np.minimum(1, tests.p * tests.p.notna().sum())).all()
    assert (tests.alpha == 0.1).all()


def test_unknown_study_is_a_usage_error_naming_the_study(on_server, tmp_path):
    res = CliRunner().invoke(main, ["analyze", "--study", "no-such-study", "--output", str(tmp_path / "x"), "--no-log"])
    assert res.exit_code == 2 and "no-such-study" in res.output and "--study" in res.output


def test_a_local_sqlite_store_like_the_demos_is_read_without_a_server(tmp_path, monkeypatch, shared_home):
    import mlflow

    from llmseg_mlflow.analysis.synthetic_study import SynthModel, SynthStudySpec, write_synthetic_study
    from llmseg_mlflow.tracking.runs import ensure_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LLMSEG_HOME", str(shared_home))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    ensure_experiment(client, "local", artifact_location=(tmp_path / "artifacts").as_uri())
    spec = SynthStudySpec(
        study="local",
        models=(SynthModel("x24", 2024, False, 0.7), SynthModel("y25", 2025, True, 0.9)),
        datasets=("d",),
        epochs=5,
        n_heldout=4,
        baseline=False,
        threads=1,
    )
    written = write_synthetic_study(client, spec)
    report = run_analyze(
        AnalyzeConfig(study="local", output=tmp_path / "out", cache_dir=tmp_path / "c"), progress=lambda m: None
    )
    per_image = pd.read_csv(report.parent / "data" / "per_image.csv")
    assert len(per_image) == 8 and set(per_image.run_id) == {p.run_id for p in written}
    runs = client.search_runs([client.get_experiment_by_name("local").experiment_id], "tags.kind = 'analysis'")
    assert {f.path for f in client.list_artifacts(runs[0].info.run_id)} >= {"index.html", "figures", "tables"}


def test_listing_after_the_first_reads_only_new_runs_and_the_roots_they_belong_to(on_server, tmp_path, monkeypatch):
    import time

    from llmseg_mlflow.analysis import listing

    monkeypatch.setattr(listing, "MARGIN_MS", 0)  # the study was written seconds ago
    client, folder = MlflowClient(), tmp_path / "c"
    roots, how = listing.list_roots(client, on_server.name, folder)
    assert how.startswith("listed") and len(roots) == 28
    time.sleep(0.05)
    target = next(p for p in on_server.pipelines if (p.model, p.dataset, p.repeat) == ("d25", OFF_DISK, 2))
    before = next(r for r in roots if r.run_id == target.run_id).tags["evaluation_run_id"]
    reevaluate(client, target, KNOWN[("d25", 2)], on_server.name)  # same scores, a new evaluation run
    roots, how = listing.list_roots(client, on_server.name, folder)
    assert "1 run(s) new" in how and "1 root(s) read again" in how, how
    assert next(r for r in roots if r.run_id == target.run_id).tags["evaluation_run_id"] != before
    _, how = listing.list_roots(client, on_server.name, folder)
    assert "0 run(s) new" in how and "0 root(s) read again" in how, how
