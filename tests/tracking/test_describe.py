"""A pipeline root's description (`mlflow.note.content`): built from known inputs, then read from a real server."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from llmseg_mlflow.tracking import describe
from llmseg_mlflow.tracking.describe import BaselineDice, ChildRun
from llmseg_mlflow.tracking.runs import RunTree
from llmseg_mlflow.tracking.schema import Cohort, Kind

TAGS = {
    "model": "gpt-4o",
    "dataset": "bagls",
    "repeat": "2",
    "provider": "openai",
    "status": "succeeded",
    "evaluation_run_id": "e1",
    "logged_model_id": "m-abc",
}
METRICS = {
    "errors_total": 3.0,
    "errors.NameError": 2.0,
    "errors.RuntimeError": 1.0,
    "debug_iterations": 3.0,
    "heldout_dice_mean": 0.8123,
    "heldout_dice_median": 0.83,
    "heldout_n": 20.0,
    "cost_usd": 0.0123,
    "tokens_in": 12345.0,
    "tokens_out": 678.0,
    "llm_calls": 4.0,
}
CHILDREN = [
    ChildRun("g1", "generation", "generation"),
    ChildRun("d1", "debug", "debug-1", note="NameError"),
    ChildRun("t1", "training", "training"),
    ChildRun("e0", "evaluation", "evaluation", status="FAILED", note="Timeout"),
    ChildRun("e1", "evaluation", "evaluation"),
]


def _build(tags=TAGS, metrics=METRICS, children=CHILDREN, baseline=None) -> str:
    return describe.build("root1", "7", tags, {"data_digest": "0123456789abcdef"}, metrics, children, baseline)


def test_every_item_is_in_the_description():
    text = _build(baseline=BaselineDice("nn1", 0.85))
    lines = text.splitlines()
    assert lines[0] == "# gpt-4o on bagls, repeat 2: succeeded"
    assert "- **Model**: gpt-4o (openai)" in lines and "- **Repeat**: 2" in lines
    assert "- **Dataset**: bagls (data digest `0123456789ab`)" in lines
    assert "- **Status**: succeeded" in lines
    assert "- **Errors**: 3 (NameError 2, RuntimeError 1)" in lines and "- **Fix rounds**: 3" in lines
    assert "- **Held-out Dice**: mean 0.812, median 0.830 (n = 20)" in lines
    nnunet = next(line for line in lines if line.startswith("- **nnU-Net**"))
    assert "0.850 on the same split ([baseline run](#/experiments/7/runs/nn1))" in nnunet
    assert "this pipeline 0.812, difference -0.038" in nnunet
    assert "- **Cost**: 0.0123 USD; 12,345 tokens in, 678 out; 4 LLM calls" in lines
    assert "- **Logged model**: [m-abc](#/experiments/7/models/m-abc)" in lines
    # one line per child: kind, name, link; what went wrong where something did
    assert "- generation: [generation](#/experiments/7/runs/g1)" in lines
    assert "- debug: [debug-1](#/experiments/7/runs/d1) (NameError)" in lines
    assert "- training: [training](#/experiments/7/runs/t1)" in lines
    assert "- evaluation: [evaluation](#/experiments/7/runs/e0) (Timeout), FAILED" in lines
    # the figure of the latest evaluation, named with its run id
    assert (
        "[`heldout/examples.png` of evaluation run e1](#/experiments/7/runs/e1/artifactPath/heldout/examples.png)"
        in (lines)
    )
    assert "(get-artifact?path=heldout%2Fexamples.png&run_uuid=e1)" in text
    assert len(text) <= 8000


def test_without_a_baseline_or_an_evaluation_it_says_so():
    tags = {k: v for k, v in TAGS.items() if k not in ("evaluation_run_id", "logged_model_id")}
    tags |= {"status": "gave_up"}
    metrics = {k: v for k, v in METRICS.items() if not k.startswith("heldout_")}
    text = _build(tags, metrics, CHILDREN[:2])
    assert text.splitlines()[0] == "# gpt-4o on bagls, repeat 2: gave_up"
    assert "- **nnU-Net**: no nnU-Net baseline on this split yet" in text
    assert "- **Held-out Dice**: not evaluated" in text
    assert "examples.png" not in text and "Logged model" not in text


def test_a_baseline_a_retraining_and_a_failed_evaluation_read_as_such():
    baseline = _build({**TAGS, "model": "nnunet-v2", "provider": "nnunet", "baseline": "true"}, {"errors_total": 0.0})
    assert "- **nnU-Net**: this run is the nnU-Net baseline of this split" in baseline
    assert "- **Errors**: none" in baseline and "- **Cost**: no LLM calls" in baseline
    retrained = _build({**TAGS, "source_run": "src1", "budget": "5", "seed": "0"}, {"errors_total": 0.0})
    assert "- **Retrained from**: [src1](#/experiments/7/runs/src1) (5 epochs, seed 0)" in retrained
    failed = _build({**TAGS, "evaluation_error": "Timeout: stopped after 300 s", "evaluation_run_id": "e0"}, {})
    assert "- **Held-out Dice**: not evaluated (Timeout: stopped after 300 s)" in failed
    assert "run_uuid=e1" in failed  # the failed evaluation drew no figure: the last finished one's is shown


def test_many_children_are_cut_to_mlflows_tag_limit():
    many = [ChildRun(f"{i:032x}", "debug", f"debug-{i}", note="RuntimeError") for i in range(200)]
    text = _build(children=many)
    assert len(text) <= 8000
    assert "- debug: [debug-0]" in text and "more: filter `tags.mlflow.parentRunId = 'root1'`" in text


def test_update_reads_the_tree_and_the_baseline_of_the_same_split_from_the_server(tracking):
    client = MlflowClient()

    def root(model: str, provider: str, digest: str, dice: float, **tags: str) -> RunTree:
        tree = RunTree.open(client, Cohort(model, None, None, "bagls", 1, "t-describe", provider))
        tree.root.tags({"status": "succeeded", **tags})
        tree.root.params({"data_digest": digest})
        tree.root.metrics({"heldout_dice_mean": dice, "errors_total": 0})
        return tree

    root("nnunet-v2", "nnunet", "other-split", 0.99, baseline="true")  # another prepared copy: not comparable
    nnunet = root("nnunet-v2", "nnunet", "d1", 0.9, baseline="true")
    llm = root("gpt-4o", "openai", "d1", 0.7)
    with llm.child(Kind.TRAINING, "training"):
        pass
    with llm.child(Kind.EVALUATION, "evaluation"):
        pass
    llm.root.tags({"evaluation_run_id": llm.children[-1]})

    text = describe.update(client, llm.root.run_id, warn=lambda m: None)
    assert text is not None and client.get_run(llm.root.run_id).data.tags["mlflow.note.content"] == text
    exp = llm.experiment_id
    assert f"0.900 on the same split ([baseline run](#/experiments/{exp}/runs/{nnunet.root.run_id}))" in text
    assert "difference -0.200" in text
    assert f"- training: [training](#/experiments/{exp}/runs/{llm.children[0]})" in text
    assert f"run_uuid={llm.children[1]}" in text
    assert "this run is the nnU-Net baseline" in describe.update(client, nnunet.root.run_id, lambda m: None)


def test_a_description_that_cannot_be_written_is_a_warning(tracking):
    warnings: list[str] = []
    assert describe.update(MlflowClient(), "0" * 32, warnings.append) is None
    assert len(warnings) == 1 and warnings[0].startswith(f"WARNING: run {'0' * 32}: its description")
