"""Study files: what a valid one expands to, and clear messages for broken ones."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.sweep.jobs import BASELINE_MODEL, expand
from llmseg_mlflow.sweep.study import STUDIES_DIR as STUDIES
from llmseg_mlflow.sweep.study import find_study, load_study
from tests.sweep.conftest import write_study


def test_paper_study_is_the_papers_design():
    study = load_study(STUDIES / "paper.yaml")
    assert len(study.models) == 19 and len(study.datasets) == 6
    assert {m.year for m in study.models} == {2024, 2025} and not any(m.fixture for m in study.models)
    jobs = expand(study)
    kinds = Counter(j.kind for j in jobs)
    # 19 x 6 pipelines, plus 9 more repeats of GPT-4o and GPT-o4-mini-high on the brain MRI set
    assert kinds["generate"] == 19 * 6 + 2 * 9
    assert {j.repeat for j in jobs if j.model == "gpt-4o" and j.dataset == "brain-meningioma"} == set(range(1, 11))
    assert {j.repeat for j in jobs if j.model == "gpt-4o" and j.dataset == "bagls"} == {1}
    budget = [j for j in jobs if j.kind == "budget"]
    assert len(budget) == 19 and {(j.dataset, j.budget) for j in budget} == {("bagls", 120)}
    baselines = [j for j in jobs if j.kind == "baseline"]
    assert {(j.model, j.dataset, j.budget) for j in baselines} == (
        {(BASELINE_MODEL, d, None) for d in study.datasets} | {(BASELINE_MODEL, "bagls", 120)}
    )
    assert len({j.key for j in jobs}) == len(jobs)  # every job has its own identity
    assert any("github-copilot" in w for w in study.warnings)  # no API: told before anything runs


def test_demo_study_uses_only_replay_fixtures_on_synthetic_data():
    study = load_study(STUDIES / "demo.yaml")
    assert all(m.fixture and m.provider == "replay" for m in study.models)
    assert all(d.startswith("synthetic-") for d in study.datasets)
    assert not study.warnings


def test_a_packaged_study_by_bare_name_and_the_repo_roots_link(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_study(Path("demo")) == find_study(Path("demo.yaml")) == STUDIES / "demo.yaml"
    assert load_study(Path("paper")).path == STUDIES / "paper.yaml"
    (tmp_path / "demo.yaml").write_text("name: mine\n")  # a file of that name here wins
    assert find_study(Path("demo")) == STUDIES / "demo.yaml" and find_study(Path("demo.yaml")) == Path("demo.yaml")
    assert find_study(Path("sub/demo.yaml")) == Path("sub/demo.yaml")  # a path is never looked up in the package
    with pytest.raises(UsageError, match=r"nope does not exist.*\(demo, paper, e\.g\. `llmseg sweep demo`\)"):
        load_study(Path("nope"))
    # `llmseg sweep studies/demo.yaml` from the repo root: `studies` there links to the packaged folder
    repo_studies = Path(__file__).resolve().parents[2] / "studies"
    assert (repo_studies / "demo.yaml").is_file() and repo_studies.resolve() == STUDIES


def test_selectors_replay_folders_and_repeats(tmp_path, replay_models):
    path = write_study(
        tmp_path,
        "s",
        """\
models:
  - {year: 2025, reasoning: false}
  - replay:fast
datasets: [synthetic-gray-suffix, synthetic-rgb-folders]
repeats: {default: 2, per_model: {deepseek-v3: 3}}
""",
    )
    study = load_study(path)
    keys = [m.key for m in study.models]
    assert keys == ["deepseek-v3", "grok-3", "replay:fast"]
    assert study.model_args["replay:fast"] == f"replay:{replay_models / 'fast'}"  # relative to the study file
    jobs = expand(study)
    assert Counter(j.model for j in jobs) == {"deepseek-v3": 6, "grok-3": 4, "replay:fast": 4}


def test_every_problem_is_reported_at_once_with_where_and_how(tmp_path):
    path = write_study(
        tmp_path,
        "bad",
        """\
models: [gpt-4oo, {year: 2031}, {colour: red}, replay:nowhere]
datasets: [bagls, brainz]
repeats: {default: 0, per_model: {gpt-4o: 3}}
budget_reruns:
  - {epochs: 120, datasets: [retina-vessels]}
baselines: {datasets: all, epochs: many}
overrides: {max_batch: 5, timeout_s: soon}
extra: 1
""",
    )
    with pytest.raises(UsageError) as info:
        load_study(path)
    text = str(info.value)
    assert str(path) in text
    for expected in (
        "extra: unknown field",
        "models[0]: unknown model 'gpt-4oo' (did you mean gpt-4o",
        "models[1]: selector {'year': 2031} matches no model",
        "models[2]: a selector takes year, reasoning, provider, fixture",
        "models[3]: replay folder",
        "datasets[1]: ",
        "repeats.default: expected a whole number >= 1, got 0",
        "repeats.per_model.gpt-4o: model 'gpt-4o' is not in the study's models",
        "budget_reruns[0].datasets: dataset 'retina-vessels' is not in the study's datasets",
        "baselines.epochs: expected a whole number >= 1, got 'many'",
        "overrides.max_batch: unknown setting (did you mean max_batches",
        "overrides.timeout_s: expected a number, got 'soon'",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert "brainz" in text


def test_cli_reports_a_broken_study_file_and_exits_2(tmp_path):
    path = write_study(tmp_path, "bad", "models: []\ndatasets: [bagls]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "llmseg_mlflow.cli", "sweep", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "models: expected a non-empty list" in proc.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "llmseg_mlflow.cli", "sweep", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_dry_run_without_a_tracking_uri_creates_no_store(tmp_path):
    path = write_study(tmp_path, "small", "models: [demo-2024-a]\ndatasets: [synthetic-gray-suffix]\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [sys.executable, "-m", "llmseg_mlflow.cli", "sweep", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no tracking store at sqlite:///" in proc.stdout and "to run: 1" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.yaml"]  # no mlflow.db, no mlruns/
