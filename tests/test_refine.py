"""`refine`: a pipeline's own results fed back in rounds under its root, through replay and the real SDKs."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.config import GenerateConfig, RefineConfig
from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.generate import run_generate
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from llmseg_mlflow.refine import run_refine
from tests.llm.fake_llm_server import ANTHROPIC, fake_llm, reply  # noqa: F401 (fixture)
from tests.replies import FILES, as_reply, with_bug, write_replies

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")
DATASET = "synthetic-gray-suffix"
LAST = "return self.out(self.dec(torch.cat([u, d1], dim=1)))"
# Constant logits make the validation Dice known in advance: nothing predicted scores ~0, everything
# predicted scores 2|M| / (|M| + N) > 0 on these disc masks. The network still has its parameters to train.
NOTHING = with_bug(FILES, "model.py", LAST, LAST.replace("return ", "return 0 * ") + " - 10")["model.py"]
EVERYTHING = with_bug(FILES, "model.py", LAST, LAST.replace("return ", "return 0 * ") + " + 10")["model.py"]


def _model_reply(code: str, intro: str) -> str:
    return f"{intro}\n\n```python\n# model.py\n{code}```\n"


def _children(client: MlflowClient, run_id: str) -> list:
    run = client.get_run(run_id)
    return client.search_runs(
        [run.info.experiment_id],
        f"tags.mlflow.parentRunId = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


@pytest.fixture(scope="module")
def refined(mlflow_server, shared_home, tmp_path_factory):
    """A pipeline whose code predicts nothing, then two rounds: one breaks the code, is fixed and predicts
    everything (better), one predicts nothing again (worse, not chosen)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mp.setenv("LLMSEG_HOME", str(shared_home))
    mp.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(mlflow_server)
    buggy = EVERYTHING.replace(" + 10", " + 10 + margin")  # NameError: name 'margin' is not defined
    replies = write_replies(
        tmp_path_factory.mktemp("refine") / "replies",
        [
            as_reply({**FILES, "model.py": NOTHING}),
            _model_reply(buggy, "A margin on the logits will help the Dice:"),
            _model_reply(EVERYTHING, "Sorry, here is model.py with the margin inlined:"),
            _model_reply(NOTHING, "Let me try a more conservative output:"),
        ],
    )
    common = dict(model=f"replay:{replies}", dataset=DATASET, study="t-refine", epochs=2, max_batches=2)
    source = run_generate(GenerateConfig(**common, preflight=False))
    assert source.status == "succeeded"
    result = run_refine(RefineConfig(run_id=source.run_id, rounds=2, preflight=False))
    yield source, result, replies
    mp.undo()


def test_rounds_are_nested_runs_and_the_best_is_chosen_by_validation_dice(refined, tracking):
    source, result, _ = refined
    client = MlflowClient()
    assert (result.rounds, result.new_rounds, result.best_round, result.llm_calls) == (2, 2, 1, 3)
    rounds = [r for r in _children(client, source.run_id) if r.data.tags["kind"] == "refinement"]
    assert [r.data.tags["round"] for r in rounds] == ["1", "2"]
    assert [r.data.tags["status"] for r in rounds] == ["succeeded", "succeeded"]
    kinds = [[k.data.tags["kind"] for k in _children(client, r.info.run_id)] for r in rounds]
    assert kinds == [["generation", "debug", "training", "evaluation"], ["generation", "training", "evaluation"]]
    for run in rounds:  # the cohort tags on every run of the round
        assert run.data.tags["model"] == client.get_run(source.run_id).data.tags["model"]
        assert run.data.tags["dataset"] == DATASET and run.data.tags["study"] == "t-refine"

    root = client.get_run(source.run_id)
    val = _history(client, source.run_id, "refine.val_dice")
    assert sorted(val) == [0, 1, 2] and val[1] > 0.05 and val[0] < 0.01 and val[2] < 0.01
    assert _history(client, source.run_id, "refine.worse") == {1: 0.0, 2: 1.0}
    assert root.data.metrics["refine_rounds"] == 2 and root.data.metrics["best_round"] == 1
    assert root.data.tags["best_round"] == "1"
    round1 = rounds[0]
    assert root.data.metrics["heldout_dice_best"] == pytest.approx(round1.data.metrics["heldout_dice_mean"])
    assert _history(client, source.run_id, "refine.heldout_dice")[1] == pytest.approx(result.heldout_dice_best)
    debug = [k for k in _children(client, round1.info.run_id) if k.data.tags["kind"] == "debug"]
    assert len(debug) == 1 and round1.data.metrics["errors_total"] == 1  # the round's own fix loop
    # (torchinfo's summary in main.py runs the forward first and reports the NameError as its RuntimeError)
    assert round1.data.metrics[f"errors.{debug[0].data.tags['error_type']}"] == 1
    traceback = open(client.download_artifacts(debug[0].info.run_id, "traceback.txt")).read()
    assert "name 'margin' is not defined" in traceback
    # the kept code is round 1's, as its run logged it
    code = client.download_artifacts(round1.info.run_id, "code/model.py")
    assert " + 10" in open(code).read() and "margin" not in open(code).read()
    # each round shows its feedback prompt (and its generation too); the root's description lists the rounds
    generation = _children(client, round1.info.run_id)[0]
    for run in (round1, generation):
        assert [p["name"] for p in json.loads(run.data.tags["mlflow.linkedPrompts"])] == ["llmseg-refine-feedback"]
    note = root.data.tags["mlflow.note.content"]
    assert "- **Refinement**: 2 rounds, best round 1" in note
    assert f"- refinement: [round-1](#/experiments/{root.info.experiment_id}/runs/{round1.info.run_id})" in note


def test_no_held_out_number_reaches_a_prompt(refined, tracking, tmp_path):
    source, _, _ = refined
    client = MlflowClient()
    rounds = [r for r in _children(client, source.run_id) if r.data.tags["kind"] == "refinement"]
    prompts = []
    for run in rounds:
        generation = _children(client, run.info.run_id)[0]
        prompts.append(open(client.download_artifacts(generation.info.run_id, "prompt.md", str(tmp_path))).read())
    chat = json.load(open(client.download_artifacts(rounds[-1].info.run_id, "chat/chat.json", str(tmp_path))))
    sent = "\n".join(m["content"] for m in chat if m["role"] == "user")
    assert all(p in sent for p in prompts)
    held_out = []
    for run in [client.get_run(source.run_id), *rounds]:
        evaluation = [k for k in _children(client, run.info.run_id) if k.data.tags["kind"] == "evaluation"][0]
        for key in evaluation.data.metrics:
            if key.startswith("heldout_dice"):
                held_out += [m.value for m in client.get_metric_history(evaluation.info.run_id, key)]
    informative = [v for v in held_out if v > 1e-3]
    assert informative  # round 1's masks score above zero: the check below has something to find
    for value in informative:
        for text in (f"{value:.4f}", repr(value)):
            assert text not in sent, f"held-out value {text} reached the LLM"
    # ... while the pipeline's own numbers do: round 2 is told round 1's validation Dice
    best_val = _history(client, rounds[0].info.run_id, "val_dice")
    assert f"{best_val[max(best_val)]:.4f}" in prompts[1] and "Validation Dice per epoch" in prompts[1]


def test_a_second_refine_continues_or_says_what_to_record(refined, tracking):
    source, _, replies = refined
    again = run_refine(RefineConfig(run_id=source.run_id, rounds=2))
    assert (again.new_rounds, again.llm_calls, again.best_round) == (0, 0, 1)
    with pytest.raises(UsageError, match=r"record the refinement reply as 05\.md"):
        run_refine(RefineConfig(run_id=source.run_id, rounds=3))
    # generation, training, evaluation and the two rounds: nothing new logged
    assert len(_children(MlflowClient(), source.run_id)) == 5


def test_a_pipeline_that_never_ran_and_a_bad_round_count_are_refused(tracking, llmseg_home, tmp_path):
    replies = write_replies(tmp_path / "r", ["I cannot help with that."])
    gave_up = run_generate(
        GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study="t-refine-bad", max_fix_rounds=0)
    )
    with pytest.raises(UsageError, match="never ran to a result"):
        run_refine(RefineConfig(run_id=gave_up.run_id))
    cli = [sys.executable, "-m", "llmseg_mlflow.cli", "refine", "--run-id", gave_up.run_id]
    zero = subprocess.run([*cli, "--rounds", "0"], capture_output=True, text=True, timeout=120)
    assert zero.returncode == 2 and "--rounds" in zero.stderr
    never = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert never.returncode == 2 and "never ran to a result" in never.stderr


def test_the_feedback_reaches_the_real_sdk_and_a_finished_refine_calls_nothing(
    fake_llm, tracking, llmseg_home, tmp_path
):
    fake_llm.script(
        ANTHROPIC,
        reply(as_reply(FILES), tokens_in=1500, tokens_out=3000),
        reply(_model_reply(EVERYTHING, "Predicting the foreground generously:"), tokens_in=5000, tokens_out=500),
    )
    cfg = GenerateConfig(
        model="claude-4-sonnet",
        dataset=DATASET,
        study="t-refine-api",
        epochs=1,
        max_batches=2,
        cache_dir=tmp_path / "cache",
        preflight=False,
        evaluate=False,
    )
    source = run_generate(cfg)
    refine = RefineConfig(run_id=source.run_id, cache_dir=tmp_path / "cache", preflight=False, evaluate=False)
    result = run_refine(refine)
    sent = fake_llm.requests(ANTHROPIC)
    assert result.new_rounds == 1 and result.llm_calls == 1 and len(sent) == 2
    messages = sent[1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]  # the same conversation, continued
    feedback = messages[-1]["content"]
    feedback = feedback if isinstance(feedback, str) else feedback[0]["text"]
    assert feedback.startswith("Your pipeline ran.") and "Training loss per epoch: 1: " in feedback
    round1 = [r for r in _children(MlflowClient(), source.run_id) if r.data.tags["kind"] == "refinement"][0]
    assert round1.data.tags["status"] == "succeeded"
    assert MlflowClient().get_run(source.run_id).data.metrics["refine.cost_usd"] > 0
    assert run_refine(refine).llm_calls == 0 and len(fake_llm.requests(ANTHROPIC)) == 2


def test_analyze_shows_each_round_from_the_server(refined, tracking, tmp_path):
    from llmseg_mlflow.analysis import AnalyzeConfig, run_analyze

    source, result, _ = refined
    report = run_analyze(
        AnalyzeConfig(study="t-refine", output=tmp_path / "r", cache_dir=tmp_path / "c", log_run=False),
        progress=lambda _: None,
    )
    table = pd.read_csv(report.parent / "tables" / "refine_rounds.csv")
    mine = table[table.model == MlflowClient().get_run(source.run_id).data.tags["model"]].set_index("round")
    assert list(mine.index) == [0, 1, 2] and (mine.pipelines == 1).all()
    assert mine.loc[1, "heldout_dice_mean"] == pytest.approx(result.heldout_dice_best)
    assert mine.loc[1, "gain_mean"] > 0 and mine.loc[0, "gain_mean"] == 0
    assert (mine.loc[1, "worse_share"], mine.loc[2, "worse_share"]) == (0, 1)
    assert mine.gap_closed_mean.isna().all()  # no nnU-Net baseline in this study
    assert 'id="table-refine_rounds"' in report.read_text() and any((report.parent / "figures").glob("refine_*.png"))


def test_round_table_gain_and_gap_closed_by_hand():
    from llmseg_mlflow.analysis.refinement import round_table

    refined = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "model": ["m", "m"],
            "dataset": ["d", "d"],
            "year": ["2025"] * 2,
            "reasoning": ["true"] * 2,
        }
    )
    rounds = pd.DataFrame(
        {
            "run_id": ["a", "a", "b", "b"],
            "round": [0, 1, 0, 1],
            "heldout_dice": [0.5, 0.7, 0.6, 0.5],
            "val_dice": [0.5, 0.7, 0.6, 0.55],
            "tokens": [None, 1000, None, 3000],
            "cost_usd": [None, 0.1, None, 0.3],
            "worse": [None, 0.0, None, 1.0],
        }
    )
    table = round_table(rounds, refined, {"d": 0.9}, "model").set_index("round")
    # a: gain 0.2 of a 0.4 gap (0.5); b: gain -0.1 of a 0.3 gap (-1/3)
    assert table.loc[1, "gain_mean"] == pytest.approx(0.05)
    assert table.loc[1, "gap_closed_mean"] == pytest.approx((0.5 - 1 / 3) / 2)
    assert (table.loc[1, "tokens_mean"], table.loc[1, "cost_usd_mean"], table.loc[1, "worse_share"]) == (
        2000,
        pytest.approx(0.2),
        0.5,
    )
    assert table.loc[1, "nnunet_heldout_dice"] == 0.9
    cohorts = round_table(rounds, refined, {"d": 0.9}, "cohort")
    assert set(cohorts.cohort) == {"2025 reasoning"}
