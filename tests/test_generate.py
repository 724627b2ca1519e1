"""`generate` end to end: replay replies -> sandbox -> fix loop -> training, checked on a real tracking server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.generate import GenerateConfig, run_generate
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from llmseg_mlflow.tracking.schema import COHORT_TAGS
from tests.replies import FILES, as_reply, with_bug, write_replies
from tests.subprocesses import finish

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")
DATASET = "synthetic-gray-suffix"


def _children(client: MlflowClient, root) -> list:
    return client.search_runs(
        [root.info.experiment_id],
        f"tags.mlflow.parentRunId = '{root.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )


@pytest.fixture(scope="module")
def fixed(mlflow_server, shared_home, tmp_path_factory):
    """One pipeline through the fix loop, preflight and held-out evaluation included (shared: it is minutes of
    sandboxed runs). Its code sets every knob of Tables 1-2, weight decay too, so its root logs every name."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mp.setenv("LLMSEG_HOME", str(shared_home))
    mp.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(mlflow_server)
    every_knob = with_bug(FILES, "main.py", "lr=LEARNING_RATE)", "lr=LEARNING_RATE, weight_decay=1e-5)")
    buggy = with_bug(every_knob, "train.py", "import time\n", "")  # NameError: time is not defined
    replies = write_replies(
        tmp_path_factory.mktemp("fix") / "replies",
        [
            as_reply(buggy),
            "Apologies, `time` was not imported. Here is the corrected file:\n\n```python\n# train.py\n"
            + FILES["train.py"]
            + "```\n",
        ],
    )
    # As import-chat keeps it: what the person pasted before reply 2, the same error in another environment.
    (replies / "02.user.md").write_text(
        'Traceback (most recent call last):\n  File "/content/main.py", line 40, in <module>\n'
        "NameError: name 'time' is not defined\n"
    )
    yield run_generate(GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study="t-fix", epochs=2))
    mp.undo()


def test_fix_loop_end_to_end(fixed, tracking, tmp_path):
    result = fixed
    client = MlflowClient()
    root = client.get_run(result.run_id)
    assert result.status == "succeeded" and result.errors_total == 1
    assert root.data.tags["status"] == "succeeded" and root.info.status == "FINISHED"
    assert root.data.tags["mlflow.runName"] == f"replay:replies/{DATASET}/r1"
    assert root.data.metrics["errors_total"] == 1 and root.data.metrics["debug_iterations"] == 1
    assert root.data.metrics["errors.NameError"] == 1
    # the LLM's choices (Tables 1-2), the harness overrides kept apart from them
    assert root.data.params["batch_size"] == "4" and root.data.params["optimizer"] == "Adam"
    assert root.data.params["loss"] == "BCEWithLogitsLoss" and root.data.params["epochs"] == "3"
    assert root.data.params["override.epochs"] == "2"
    assert root.data.params["override.data_dir"].endswith("/pool")
    assert root.data.params["final_activation"] == "none"

    kids = _children(client, root)
    kinds = [r.data.tags["kind"] for r in kids]
    assert kinds == ["generation", "debug", "training", "evaluation"]
    for run in [root, *kids]:
        assert set(COHORT_TAGS) <= set(run.data.tags), run.data.tags
        assert run.data.tags["study"] == "t-fix" and run.data.tags["dataset"] == DATASET
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ  # nothing leaks into child processes
    for run in kids[:2]:  # each LLM call is a trace linked to the run that made it
        traces = mlflow.search_traces(locations=[root.info.experiment_id], run_id=run.info.run_id, return_type="list")
        assert len(traces) == 1 and traces[0].info.trace_metadata["mlflow.sourceRun"] == run.info.run_id
    debug = kids[1]
    assert debug.data.tags["error_type"] == "NameError" and debug.data.tags["iteration"] == "1"
    assert debug.data.tags["phase"] == "preflight"
    traceback = client.download_artifacts(debug.info.run_id, "traceback.txt", str(tmp_path))
    text = open(traceback).read()
    assert text.startswith("Traceback (most recent call last):") and text.rstrip().endswith(
        "NameError: name 'time' is not defined"
    )
    assert debug.data.tags["replay_divergence"] == "false"  # the recorded chat hit the same error
    assert (root.data.metrics["replay_compared"], root.data.metrics["replay_divergences"]) == (1, 0)
    assert debug.data.params["recorded_error"] == "NameError: name 'time' is not defined"
    diff = open(client.download_artifacts(debug.info.run_id, "fix.diff", str(tmp_path))).read()
    assert "+import time" in diff

    training = kids[2]
    history = client.get_metric_history(training.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2]
    assert len(client.get_metric_history(root.info.run_id, "train_loss")) == 2
    assert 0.0 <= training.data.metrics["val_dice"] <= 1.0
    assert "own_test_dice_mean" in root.data.metrics and root.data.metrics["params_total"] > 0
    outputs = {a.path for a in client.list_artifacts(training.info.run_id, "attempt/results")}
    assert {"attempt/results/train_losses.xlsx", "attempt/results/unet_state_dict.pth"} <= outputs
    ran = open(client.download_artifacts(training.info.run_id, "attempt/main.py", str(tmp_path))).read()
    assert "NUM_EPOCHS = 2" in ran  # the code as it ran, with the harness's override
    assert "model_summary.txt" in {a.path for a in client.list_artifacts(training.info.run_id)}
    chat = json.load(open(client.download_artifacts(root.info.run_id, "chat/chat.json", str(tmp_path))))
    assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant"]
    assert chat[2]["content"] == text.rstrip()  # the fix request is the traceback, nothing else
    root_artifacts = {a.path for a in client.list_artifacts(root.info.run_id)}
    assert {"code", "chat", "code_history.bundle", "prompt.md"} <= root_artifacts

    # the run explains itself in the UI: its Description, the prompt it used, its traces, its system metrics
    note = root.data.tags["mlflow.note.content"]
    assert note.startswith(f"# replay:replies on {DATASET}, repeat 1: succeeded\n")
    assert f"- **Held-out Dice**: mean {root.data.metrics['heldout_dice_mean']:.3f}, " in note
    assert "- **nnU-Net**: no nnU-Net baseline on this split yet" in note
    assert "- **Errors**: 1 (NameError 1)" in note and "- **Fix rounds**: 1" in note
    assert f"- training: [training](#/experiments/{root.info.experiment_id}/runs/{training.info.run_id})" in note
    assert f"run_uuid={kids[3].info.run_id}" in note  # the evaluation's example figure
    version = root.data.params["prompt_uri"].rsplit("/", 1)[1]
    for run in (root, kids[0]):
        assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == [{"name": "llmseg-appendix-d", "version": version}]
    system = {k for k in training.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    steps = [m.step for m in client.get_metric_history(training.info.run_id, "system/cpu_utilization_percentage")]
    assert steps == list(range(len(steps)))


def test_gives_up_after_max_fix_rounds(tracking, llmseg_home, tmp_path):
    broken = as_reply(with_bug(FILES, "model.py", "import torch.nn as nn", "import torch.nn as nnn"))
    replies = write_replies(tmp_path / "r", [broken, broken])
    (replies / "02.user.md").write_text("ModuleNotFoundError: No module named 'cv2'\n")  # the authors' error
    result = run_generate(
        GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study="t-giveup", max_fix_rounds=1)
    )
    root = MlflowClient().get_run(result.run_id)
    assert result.status == "gave_up" and result.errors_total == 2
    assert root.data.metrics["errors.NameError"] == 2 and root.data.metrics["debug_iterations"] == 1
    kids = _children(MlflowClient(), root)
    debug = [r for r in kids if r.data.tags["kind"] == "debug"]
    assert [r.data.tags.get("answered") for r in debug] == ["true", "false"]
    # replaying a chat whose author met another error: both are on the debug run that answered
    assert debug[0].data.tags["replay_divergence"] == "true" and "replay_divergence" not in debug[1].data.tags
    assert debug[0].data.params["recorded_error"] == "ModuleNotFoundError: No module named 'cv2'"
    assert (root.data.metrics["replay_compared"], root.data.metrics["replay_divergences"]) == (1, 1)
    recorded = MlflowClient().download_artifacts(debug[0].info.run_id, "recorded_user_turn.md", str(tmp_path))
    assert open(recorded).read() == "ModuleNotFoundError: No module named 'cv2'\n"
    assert "training" not in [r.data.tags["kind"] for r in kids]


def test_a_replay_that_runs_out_of_replies_gives_up_as_its_author_did(tracking, llmseg_home, tmp_path):
    broken = as_reply(with_bug(FILES, "model.py", "import torch.nn as nn", "import torch.nn as nnn"))
    replies = write_replies(tmp_path / "r", [broken])  # an imported chat whose author stopped after one error
    result = run_generate(GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study="t-ended", evaluate=False))
    root = MlflowClient().get_run(result.run_id)
    assert result.status == "gave_up" and root.info.status == "FINISHED" and "error" not in root.data.tags
    debug = [r for r in _children(MlflowClient(), root) if r.data.tags["kind"] == "debug"]
    assert [(r.data.tags["answered"], r.data.tags.get("recording_ended")) for r in debug] == [("false", "true")]
    assert root.data.metrics["debug_iterations"] == 0 and root.data.metrics["errors_total"] == 1


def test_reply_without_code_is_fed_back_as_no_code_error(tracking, llmseg_home, tmp_path):
    replies = write_replies(tmp_path / "r", ["I cannot help with that.", "Sure! First install PyTorch."])
    result = run_generate(
        GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study="t-nocode", max_fix_rounds=1)
    )
    assert result.status == "no_code"
    client = MlflowClient()
    debug = [r for r in _children(client, client.get_run(result.run_id)) if r.data.tags["kind"] == "debug"]
    assert [r.data.tags["error_type"] for r in debug] == ["NoCodeError", "NoCodeError"]


def _cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmseg_mlflow.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def _start(*args: str, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llmseg_mlflow.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_cli_prints_json_last_and_exit_codes(tracking, llmseg_home, tmp_path):
    import os

    env = {**os.environ}
    replies = write_replies(tmp_path / "r", [as_reply(FILES)])
    ok = _cli(
        "generate",
        "--model",
        f"replay:{replies}",
        "--dataset",
        DATASET,
        "--epochs",
        "1",
        "--max-batches",
        "2",
        "--no-preflight",  # a preflight of the same 1 epoch x 2 batches would only repeat the run
        "--study",
        "t-cli",
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    last = json.loads(ok.stdout.strip().splitlines()[-1])
    assert last["status"] == "succeeded" and last["errors_total"] == 0 and 0.0 <= last["heldout_dice_mean"] <= 1.0
    history = MlflowClient().get_metric_history(last["run_id"], "train_loss")
    assert len(history) == 1

    # The refusals below are independent processes (each seconds of imports): started together, checked after.
    empty = tmp_path / "empty"
    empty.mkdir()
    bin_dir = tmp_path / "bin"  # a PATH with git but without bwrap
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    broken = write_replies(tmp_path / "b", ["no code here"])
    started = [
        _start("generate", "--model", "gpt-17", "--dataset", DATASET, env=env),
        _start("generate", "--model", f"replay:{replies}", "--dataset", "no-such-set", env=env),
        _start("generate", "--model", f"replay:{empty}", "--dataset", DATASET, env=env),
        _start("generate", "--model", f"replay:{replies}", "--dataset", DATASET, env={**env, "PATH": str(bin_dir)}),
        _start("generate", "--model", f"replay:{broken}", "--dataset", DATASET, "--max-fix-rounds", "0", env=env),
    ]
    unknown, bad_data, no_replies, no_bwrap, gave_up = [finish(p) for p in started]
    assert unknown.returncode == 2 and "claude-4-sonnet" in unknown.stderr and "replay:" in unknown.stderr
    assert bad_data.returncode == 2 and "synthetic-gray-suffix" in bad_data.stderr
    assert no_replies.returncode == 2 and str(empty) in no_replies.stderr
    assert no_bwrap.returncode == 2 and "bubblewrap" in no_bwrap.stderr
    assert gave_up.returncode == 3 and json.loads(gave_up.stdout.strip().splitlines()[-1])["status"] == "no_code"


def test_a_trained_pipeline_whose_evaluation_fails_says_so_on_the_root(tracking, llmseg_home, tmp_path):
    no_model = with_bug(
        FILES,
        "train.py",
        '    torch.save(model, f"{save_path}/unet_model.pth")\n'
        '    torch.save(model.state_dict(), f"{save_path}/unet_state_dict.pth")\n',
        "",
    )
    replies = write_replies(tmp_path / "replies", [as_reply(no_model)])
    result = run_generate(
        GenerateConfig(
            model=f"replay:{replies}",
            dataset=DATASET,
            study="t-evalfail",
            epochs=1,
            max_batches=2,
            max_fix_rounds=0,
            preflight=False,  # the evaluation is the point
        )
    )
    client = MlflowClient()
    root = client.get_run(result.run_id)
    assert result.status == "evaluation_failed" and result.heldout_dice_mean is None
    assert root.data.tags["status"] == "evaluation_failed" and root.info.status == "FAILED"
    assert "no loadable model file" in root.data.tags["evaluation_error"]
    kids = {r.data.tags["kind"]: r for r in _children(client, root)}
    assert kids["training"].info.status == "FINISHED"  # it trained ...
    assert kids["evaluation"].info.status == "FAILED"  # ... and the evaluation is what failed
    assert kids["evaluation"].info.run_id == root.data.tags["evaluation_run_id"]


def _samples_test_batches(k: int) -> dict[str, str]:
    """Code that shows k random test batches, as GitHub Copilot's did: it needs k batches in the test loader."""
    return with_bug(
        FILES,
        "main.py",
        "    test_model(model, test_loader, SAVE_PATH, device)\n",
        f"    test_model(model, test_loader, SAVE_PATH, device)\n    shown = __import__('random').sample(list(test_loader), {k})\n",
    )


def test_a_preflight_failure_the_batch_cap_caused_is_not_the_codes(tracking, llmseg_home, tmp_path):
    # 9 test images in batches of 4: 3 batches, of which the preflight lets 2 through
    replies = write_replies(tmp_path / "r", [as_reply(_samples_test_batches(50)), as_reply(_samples_test_batches(3))])
    result = run_generate(
        GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study="t-cap", epochs=1, evaluate=False)
    )
    client = MlflowClient()
    root = client.get_run(result.run_id)
    # 50 batches fail on all the data too: one error, from the recheck; 3 fail only under the preflight's cap
    assert result.status == "succeeded" and result.errors_total == 1
    debug = [r for r in _children(client, root) if r.data.tags["kind"] == "debug"]
    assert [(r.data.tags["phase"], r.data.tags["error_type"]) for r in debug] == [("preflight-recheck", "ValueError")]
    assert "batch_cap_cut" not in debug[0].data.tags
    assert root.data.metrics["preflight_cap_errors"] == 1 and root.data.metrics["debug_iterations"] == 1


def test_an_error_after_the_users_batch_cap_cut_a_loader_says_so(tracking, llmseg_home, tmp_path):
    replies = write_replies(tmp_path / "r", [as_reply(_samples_test_batches(3))])
    result = run_generate(
        GenerateConfig(
            model=f"replay:{replies}",
            dataset=DATASET,
            study="t-cap",
            epochs=1,
            max_batches=2,
            preflight=False,
            evaluate=False,
        )
    )
    client = MlflowClient()
    debug = [r for r in _children(client, client.get_run(result.run_id)) if r.data.tags["kind"] == "debug"]
    assert [(r.data.tags["phase"], r.data.tags.get("batch_cap_cut")) for r in debug] == [("full", "true")]
    assert "Sample larger than population" in debug[0].data.params["error_message"]


def test_the_same_error_three_times_in_a_row_is_a_stuck_loop(tracking, llmseg_home, tmp_path):
    broken = as_reply(with_bug(FILES, "model.py", "import torch.nn as nn", "import torch.nn as nnn"))
    replies = write_replies(tmp_path / "r", [broken] * 5)
    result = run_generate(GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study="t-stuck"))
    client = MlflowClient()
    root = client.get_run(result.run_id)
    assert result.status == "stuck_loop" and result.errors_total == 3  # not the 10 fix rounds allowed
    debug = [r for r in _children(client, root) if r.data.tags["kind"] == "debug"]
    assert [r.data.tags["answered"] for r in debug] == ["true", "true", "false"]
    assert debug[-1].data.tags["stuck_loop"] == "true" and root.data.params["stuck_after"] == "3"
    assert root.data.metrics["interventions"] == 0


def test_loop_hint_sends_one_supplementary_message_and_counts_it(tracking, llmseg_home, tmp_path):
    broken = as_reply(with_bug(FILES, "model.py", "import torch.nn as nn", "import torch.nn as nnn"))
    replies = write_replies(tmp_path / "r", [broken, broken, broken, as_reply(FILES)])
    result = run_generate(
        GenerateConfig(
            model=f"replay:{replies}",
            dataset=DATASET,
            study="t-hint",
            epochs=1,
            max_batches=2,
            loop_hint="Look at how torch.nn is imported.",
            preflight=False,  # the repeated error comes from the full run just the same
            evaluate=False,
        )
    )
    client = MlflowClient()
    root = client.get_run(result.run_id)
    assert result.status == "succeeded" and root.data.metrics["interventions"] == 1
    debug = [r for r in _children(client, root) if r.data.tags["kind"] == "debug"]
    assert [r.data.tags.get("intervention") for r in debug] == [None, None, "true"]
    chat = json.loads(mlflow.artifacts.load_text(root.info.artifact_uri + "/chat/chat.json"))
    sent = [m["content"] for m in chat if m["role"] == "user"]
    assert sent[3].startswith("Traceback") and sent[3].endswith("\n\nLook at how torch.nn is imported.")
    assert not any("Look at how" in m for m in sent[:3])
    assert root.data.params["loop_hint"] == "custom"


def test_the_synthetic_study_logs_nothing_a_real_pipeline_lacks(fixed, tracking, tmp_path):
    """Analysis is tested on the synthetic study: every name it writes must come from a real `generate`
    (the fix loop's pipeline: every knob set, one error so that errors.{Type} exists, evaluated)."""
    from llmseg_mlflow.analysis.synthetic_study import SynthModel, SynthStudySpec, write_synthetic_study
    from llmseg_mlflow.tracking.schema import HYPERPARAMETERS, SUMMARY_METRICS

    result = fixed
    client = MlflowClient()
    real = client.get_run(result.run_id).data
    assert result.status == "succeeded"
    spec = SynthStudySpec(
        "t-schema-synth",
        (SynthModel("m", 2025, True, 0.8),),
        ("d",),
        baseline=False,
        children=False,
        artifacts=False,
        threads=1,
        epochs=3,
    )
    synth = client.get_run(write_synthetic_study(client, spec)[0].run_id).data

    def names(keys):  # errors.{Type} is one family, whichever types happened
        return {"errors.{Type}" if k.startswith("errors.") else k for k in keys}

    for kind, ours, theirs in (
        ("param", real.params, synth.params),
        ("metric", real.metrics, synth.metrics),
        ("tag", real.tags, synth.tags),
    ):
        drift = sorted(names(theirs) - names(ours) - {"mlflow.runName"})
        assert not drift, f"the synthetic study logs {kind}s a real pipeline does not: {drift}"
    # and what analysis reads, Tables 1-2 included, is on the real root
    assert set(HYPERPARAMETERS) <= set(real.params), sorted(set(HYPERPARAMETERS) - set(real.params))
    assert set(SUMMARY_METRICS) <= set(real.metrics), sorted(set(SUMMARY_METRICS) - set(real.metrics))
    # the tests' U-Net: DoubleConv(1->4) at 32 px, DoubleConv(4->8) at 16 px (the lowest), decoder back at 32
    assert (real.params["encoder_stages"], json.loads(real.params["encoder_channels"])) == ("1", [4])
    assert json.loads(real.params["bottleneck_channels"]) == [4, 8] and real.params["final_layer"] == "Conv2d(4->1)"
    assert real.metrics["params_total"] == 1709  # counted on the built network
