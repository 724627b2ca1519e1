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
        "models[2].colour: unknown field; allowed: year, reasoning, provider, fixture",
        "models[3]: replay folder",
        "datasets[1]: ",
        "repeats.default: expected a number >= 1, got 0",
        "repeats.per_model.gpt-4o: model 'gpt-4o' is not in the study's models",
        "budget_reruns[0].datasets: dataset 'retina-vessels' is not in the study's datasets",
        "baselines.epochs: expected a whole number, got 'many'",
        "overrides.max_batch: unknown field (did you mean max_batches",
        "overrides.timeout_s: expected a number, got 'soon'",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert "brainz" in text


def test_wrong_types_and_unknown_fields_are_named_with_what_was_expected(tmp_path):
    path = write_study(
        tmp_path,
        "types",
        "model: [demo-2024-a]\ndatasets: [synthetic-gray-suffix]\nrepeats: '3'\noverrides: {epochs: true}\n",
    )
    with pytest.raises(UsageError) as info:
        load_study(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"study file {path} has 4 problem(s):"
    assert lines[1:] == [
        "  model: unknown field (did you mean models?); allowed: "
        "name, models, datasets, repeats, budget_reruns, baselines, seeds, refine, promote, overrides",
        "  models: expected a non-empty list of model keys, replay:DIR folders or selectors such as {year: 2025}, "
        "got []",
        "  repeats: expected a count or {default, per_model}, got '3'",
        "  overrides.epochs: expected a whole number, got True",
    ]


def test_type_and_resolution_problems_are_reported_together_in_file_order(tmp_path):
    path = write_study(
        tmp_path,
        "mixed",
        """\
models: [demo-2024-a, nosuch]
datasets: [synthetic-gray-suffix, 5]
repeats: {default: 2, per_model: {demo-2024-a: {count: x}, ghost: 2}}
budget_reruns:
  - {epochs: 0, datasets: [synthetic-gray-suffix]}
  - {epochs: 2, datasets: [nope]}
""",
    )
    with pytest.raises(UsageError) as info:
        load_study(path)
    lines = [line.strip() for line in str(info.value).splitlines()[1:]]
    assert [line.split(":")[0] for line in lines] == [
        "models[1]",
        "datasets[1]",
        "repeats.per_model.demo-2024-a.count",
        "repeats.per_model.ghost",
        "budget_reruns[0].epochs",
        "budget_reruns[1].datasets",
    ]
    assert lines[0].startswith("models[1]: unknown model 'nosuch'")
    assert lines[1] == "datasets[1]: expected text, got 5"
    assert lines[2] == "repeats.per_model.demo-2024-a.count: expected a whole number, got 'x'"
    assert lines[3] == "repeats.per_model.ghost: model 'ghost' is not in the study's models"
    assert lines[4] == "budget_reruns[0].epochs: expected a number >= 1, got 0"
    assert lines[5].startswith("budget_reruns[1].datasets: dataset 'nope' is not in the study's datasets")


def test_overrides_keep_their_values_and_an_empty_section_is_none(tmp_path):
    body = "models: [demo-2024-a]\ndatasets: [synthetic-gray-suffix]\nbaselines:\n"
    study = load_study(write_study(tmp_path, "ov", body + "overrides: {timeout_s: 300, memory_gb: 4.5}\n"))
    assert study.overrides == {"timeout_s": 300, "memory_gb": 4.5} and type(study.overrides["timeout_s"]) is int
    assert study.baselines.datasets == () and study.repeats_for("demo-2024-a", "synthetic-gray-suffix") == 1
    assert load_study(write_study(tmp_path, "none", body + "overrides:\n")).overrides == {}


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
