"""Job identity against a real tracking server: what counts as done, what is retried, what the dry run says."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from llmseg_mlflow.sweep.jobs import StudyRuns
from llmseg_mlflow.sweep.run import dry_run, plan
from llmseg_mlflow.sweep.study import load_study
from llmseg_mlflow.tracking.runs import ensure_experiment
from tests.sweep.conftest import write_study


def _root(client, exp_id, status, run_status="FINISHED", **tags):
    base = {"kind": "pipeline", "dataset": "synthetic-gray-suffix", "repeat": "1", "study": "x"}
    run = client.create_run(exp_id, tags={**base, **{k: str(v) for k, v in tags.items()}, "status": status})
    if run_status != "RUNNING":
        client.set_terminated(run.info.run_id, run_status)
    return run.info.run_id


def _on_server(tmp_path, name: str, second_model: str, section: str):
    """A study of demo-2024-a and another fixture on the gray set with one extra section, its experiment made."""
    body = f"models: [demo-2024-a, {second_model}]\ndatasets: [synthetic-gray-suffix]\n{section}\n"
    study = load_study(write_study(tmp_path, name, body))
    client = MlflowClient()
    return study, client, ensure_experiment(client, study.name)


def test_done_retry_and_new_jobs_from_the_server(own_tracking, tmp_path):
    # its own server: the price estimate reads finished pipelines of every study, and other tests finish gpt-4o ones
    path = write_study(
        tmp_path,
        "t-ident",
        """\
models: [demo-2024-a, gpt-4o]
datasets: [synthetic-gray-suffix]
repeats: {default: 1, per_model: {demo-2024-a: 3}}
budget_reruns: [{epochs: 3, models: [demo-2024-a], baseline: true}]
baselines: {datasets: all}
""",
    )
    study = load_study(path)
    client = MlflowClient()
    exp = ensure_experiment(client, study.name)
    done = _root(client, exp, "succeeded", model="demo-2024-a")
    crashed = _root(client, exp, "running", "RUNNING", model="demo-2024-a", repeat=2)
    _root(client, exp, "running", "KILLED", model="demo-2024-a", repeat=3, superseded_by="abc")  # ignored
    gave_up = _root(client, exp, "gave_up", model="demo-2024-a", repeat=3)  # a result, never re-run
    harness = _root(client, exp, "harness_error", "FAILED", model="demo-2024-a", budget=3, source_run=done)
    baseline = _root(client, exp, "succeeded", model="nnunet-v2", baseline="true")
    _root(client, exp, "succeeded", model="other-model")  # not in the study
    # the price estimate comes from finished pipelines of the same model, in any study
    other = ensure_experiment(client, "t-ident-earlier")
    run = _root(client, other, "succeeded", model="gpt-4o", repeat=1)
    client.log_metric(run, "tokens_in", 100_000)
    client.log_metric(run, "tokens_out", 20_000)
    client.log_metric(run, "llm_calls", 3)

    states, _ = plan(study, client)
    by_label = {(s.job.kind, s.job.label): s for s in states}
    assert by_label[("generate", "demo-2024-a/synthetic-gray-suffix/r1")].done.info.run_id == done
    assert by_label[("generate", "demo-2024-a/synthetic-gray-suffix/r3")].done.info.run_id == gave_up
    retry = by_label[("generate", "demo-2024-a/synthetic-gray-suffix/r2")]
    assert retry.state == "retry" and [r.info.run_id for r in retry.stale] == [crashed]
    assert [r.info.run_id for r in by_label[("budget", "demo-2024-a/synthetic-gray-suffix/r1/b3")].stale] == [harness]
    assert by_label[("budget", "demo-2024-a/synthetic-gray-suffix/r2/b3")].state == "new"
    assert by_label[("baseline", "nnunet-v2/synthetic-gray-suffix/r1")].done.info.run_id == baseline
    assert by_label[("baseline", "nnunet-v2/synthetic-gray-suffix/r1/b3")].state == "new"  # another budget
    assert by_label[("generate", "gpt-4o/synthetic-gray-suffix/r1")].state == "new"

    lines: list[str] = []
    dry_run(study, out=lines.append)
    text = "\n".join(lines)
    assert "done: 3, to retry: 2, to run: 4" in text
    # gpt-4o: 100k in x $2.5/M + 20k out x $10/M = $0.45 per pipeline, the only API job left
    assert "expected API cost of what is left: $0.45" in text
    assert "gpt-4o" in text and "$0.45 per pipeline (mean of 1 finished pipelines)" in text
    assert MlflowClient().get_run(crashed).info.status == "RUNNING"  # a dry run changes nothing


def test_superseding_keeps_the_old_run_and_marks_it(tracking, tmp_path):
    path = write_study(tmp_path, "t-supersede", "models: [demo-2024-b]\ndatasets: [synthetic-gray-suffix]\n")
    study = load_study(path)
    client = MlflowClient()
    exp = ensure_experiment(client, study.name)
    crashed = _root(client, exp, "running", "RUNNING", model="demo-2024-b")
    failed = _root(client, exp, "harness_error", "FAILED", model="demo-2024-b")
    new = _root(client, exp, "succeeded", model="demo-2024-b")
    states, runs = plan(study, client)
    assert states[0].state == "done"
    marked = runs.supersede(states[0].job, new)
    assert sorted(marked) == sorted([crashed, failed])
    old = client.get_run(crashed)
    assert old.data.tags["superseded_by"] == new and old.info.status == "KILLED"
    assert client.get_run(failed).data.tags["superseded_by"] == new and client.get_run(failed).info.status == "FAILED"
    assert client.get_run(new).info.status == "FINISHED" and "superseded_by" not in client.get_run(new).data.tags
    assert StudyRuns(client, exp).load().roots[states[0].job.key][0].info.run_id == new


def test_each_job_kind_builds_the_config_its_module_takes(tmp_path):
    from llmseg_mlflow.baseline.run import BaselineConfig
    from llmseg_mlflow.sweep.jobs import Job
    from llmseg_mlflow.sweep.worker import JobSpec, _configs
    from llmseg_mlflow.train import TrainConfig

    def spec(job, **kw):
        return JobSpec(
            job=job,
            study="s",
            model_arg=job.model,
            overrides={"max_batches": 3, "timeout_s": 60},
            env={},
            log_file=str(tmp_path / "x.log"),
            data_root=str(tmp_path),
            **kw,
        )

    _, train = _configs(spec(Job("budget", "gpt-4o", "bagls", 2, 120), source_run="abc"))
    assert isinstance(train, TrainConfig) and (train.run_id, train.epochs, train.max_batches) == ("abc", 120, 3)
    assert train.timeout_s == 60 and train.data_root == tmp_path and train.study == "s"
    _, base = _configs(spec(Job("baseline", "nnunet-v2", "bagls", 1), baseline_epochs=50, baseline_iterations=20))
    assert isinstance(base, BaselineConfig) and (base.epochs, base.iterations, base.dataset) == (50, 20, "bagls")
    _, rerun = _configs(spec(Job("baseline", "nnunet-v2", "bagls", 1, 120), baseline_epochs=50))
    assert rerun.epochs == 120  # the baseline at a budget-rerun budget


def test_seed_retrainings_are_jobs_of_their_own_and_found_again_on_the_server(tracking, tmp_path):
    from llmseg_mlflow.sweep.jobs import Job
    from llmseg_mlflow.sweep.worker import JobSpec, _configs
    from llmseg_mlflow.train import TrainConfig

    study, client, exp = _on_server(tmp_path, "t-seeds-plan", "demo-2025-a", "seeds: {count: 2, models: [demo-2024-a]}")
    done = _root(client, exp, "succeeded", model="demo-2024-a")
    seeded = _root(client, exp, "succeeded", model="demo-2024-a", seed=0, source_run=done)
    states, _ = plan(study, client)
    by_label = {(s.job.kind, s.job.label): s for s in states}
    assert {label for kind, label in by_label if kind == "seed"} == {
        "demo-2024-a/synthetic-gray-suffix/r1/s0",
        "demo-2024-a/synthetic-gray-suffix/r1/s1",
    }  # only the models asked for
    assert by_label[("seed", "demo-2024-a/synthetic-gray-suffix/r1/s0")].done.info.run_id == seeded
    assert by_label[("seed", "demo-2024-a/synthetic-gray-suffix/r1/s1")].state == "new"
    assert by_label[("generate", "demo-2024-a/synthetic-gray-suffix/r1")].done.info.run_id == done  # not the seed root
    lines: list[str] = []
    dry_run(study, out=lines.append)
    assert "2 seed retrainings" in "\n".join(lines)

    spec = JobSpec(
        job=Job("seed", "demo-2024-a", "synthetic-gray-suffix", 1, seed=1),
        study="s",
        model_arg="demo-2024-a",
        overrides={"max_batches": 3},
        env={},
        log_file=str(tmp_path / "x.log"),
        source_run=done,
    )
    _, cfg = _configs(spec)
    assert isinstance(cfg, TrainConfig) and (cfg.run_id, cfg.seed, cfg.epochs, cfg.max_batches) == (done, 1, None, 3)


def test_refine_jobs_continue_the_pipeline_and_are_done_when_it_has_the_rounds(tracking, tmp_path):
    from llmseg_mlflow.config import RefineConfig
    from llmseg_mlflow.sweep.jobs import Job
    from llmseg_mlflow.sweep.worker import JobSpec, _configs

    study, client, exp = _on_server(
        tmp_path, "t-refine-plan", "demo-2024-b", "refine: {rounds: 2, models: [demo-2024-b]}"
    )
    refined = _root(client, exp, "succeeded", model="demo-2024-b")
    client.log_metric(refined, "refine_rounds", 1)  # one round of the two asked for
    states, _ = plan(study, client)
    by_label = {(s.job.kind, s.job.label): s for s in states}
    label = "demo-2024-b/synthetic-gray-suffix/r1/refine2"
    assert [lbl for kind, lbl in by_label if kind == "refine"] == [label]  # only the models asked for
    assert by_label[("refine", label)].state == "new"
    assert by_label[("generate", "demo-2024-b/synthetic-gray-suffix/r1")].done.info.run_id == refined
    client.log_metric(refined, "refine_rounds", 2)
    states, _ = plan(study, client)
    assert {s.job.label: s for s in states}[label].done.info.run_id == refined
    lines: list[str] = []
    dry_run(study, out=lines.append)
    assert "1 refinements" in "\n".join(lines) and "r2" in "\n".join(lines)

    job = Job("refine", "demo-2024-b", "synthetic-gray-suffix", 1, rounds=2)
    spec = JobSpec(
        job=job,
        study="s",
        model_arg="demo-2024-b",
        overrides={"preflight": False, "max_batches": 3},
        env={},
        log_file=str(tmp_path / "x.log"),
        source_run=refined,
    )
    _, cfg = _configs(spec)
    assert isinstance(cfg, RefineConfig) and (cfg.run_id, cfg.rounds, cfg.preflight) == (refined, 2, False)
