"""The sandboxed evaluator on hand-made pipelines: loading, output kinds, preprocessing, data discipline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.evaluation.evaluator import EvalSettings, EvaluationError, evaluate_attempt
from llmseg_mlflow.evaluation.record import score_heldout
from llmseg_mlflow.generate import choices, ensure_prepared
from llmseg_mlflow.evaluation.evaluator import code_files
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.evaluation.pipelines import make_attempt

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")


@pytest.fixture(scope="module")
def gray(shared_home):
    return ensure_prepared(get_dataset("synthetic-gray-suffix"), shared_home / "data")


@pytest.fixture(scope="module")
def rgb(shared_home):
    return ensure_prepared(get_dataset("synthetic-rgb-folders"), shared_home / "data")


def _evaluate(attempt: Path, data, tmp_path: Path, preprocessing: str = "auto"):
    out = evaluate_attempt(attempt, data, tmp_path / f"eval-{preprocessing}", EvalSettings(preprocessing),
                           choices(code_files(attempt)))
    return out, score_heldout(data, out.predictions)


def test_whole_model_and_state_dict_score_the_same(gray, tmp_path):
    whole, s_whole = _evaluate(make_attempt(tmp_path / "whole"), gray, tmp_path / "w")
    state, s_state = _evaluate(make_attempt(tmp_path / "sd", save="state_dict"), gray, tmp_path / "s")
    assert whole.info["eval_load"] == "whole_model" and state.info["eval_load"] == "state_dict"
    assert state.info["eval_checkpoint"] == "results/model.pth"
    assert whole.info["eval_preprocessing"] == state.info["eval_preprocessing"] == "own"
    assert s_whole.summary()["heldout_dice_mean"] > 0.3
    np.testing.assert_allclose(s_whole.dice, s_state.dice)
    # every held-out image has a mask at the ground truth's resolution
    assert sorted(whole.predictions) == sorted(p.name for p, _ in gray.heldout_pairs())
    assert all(m.shape == (64, 64) and m.dtype == np.uint8 for m in whole.predictions.values())


def test_argparse_pipelines_get_their_own_preprocessing(gray, tmp_path):
    out, scores = _evaluate(make_attempt(tmp_path / "a", argparse=True), gray, tmp_path)
    assert out.info["eval_preprocessing"] == "own", out.info.get("eval_fallback_reason")
    assert scores.summary()["heldout_dice_mean"] > 0.3


def test_sigmoid_outputs_are_not_squashed_twice(gray, tmp_path):
    logits, s_logits = _evaluate(make_attempt(tmp_path / "l"), gray, tmp_path / "l")
    probs, s_probs = _evaluate(make_attempt(tmp_path / "p", sigmoid=True), gray, tmp_path / "p")
    assert logits.info["eval_output"] == "logits" and probs.info["eval_output"] == "probabilities"
    np.testing.assert_allclose(s_logits.dice, s_probs.dice)  # sigmoid twice would threshold at 0.73


def test_half_size_outputs_are_brought_to_the_ground_truth(gray, tmp_path):
    full, s_full = _evaluate(make_attempt(tmp_path / "f"), gray, tmp_path / "f")
    half, s_half = _evaluate(make_attempt(tmp_path / "h", half=True), gray, tmp_path / "h")
    assert all(m.shape == (64, 64) for m in half.predictions.values())
    assert abs(s_half.summary()["heldout_dice_mean"] - s_full.summary()["heldout_dice_mean"]) < 0.1


def test_rgb_pipeline_reads_three_channels(rgb, tmp_path):
    # lesions are darker than skin: foreground where the channel mean is below ~0.45
    attempt = make_attempt(tmp_path / "rgb", rgb=True, suffix="", weight=-10.0, bias=4.5)
    own, s_own = _evaluate(attempt, rgb, tmp_path)
    generic, s_generic = _evaluate(attempt, rgb, tmp_path, "generic")
    assert own.info["eval_preprocessing"] == "own" and generic.info["eval_preprocessing"] == "generic"
    assert s_own.summary()["heldout_dice_mean"] > 0.3
    np.testing.assert_allclose(s_own.dice, s_generic.dice, atol=0.05)  # same [0, 1] inputs either way


def test_own_preprocessing_wins_for_a_z_scoring_pipeline(gray, tmp_path):
    attempt = make_attempt(tmp_path / "z", zscore=True, weight=4.0, bias=-4.0)  # foreground where z > 1
    own, s_own = _evaluate(attempt, gray, tmp_path)
    generic, s_generic = _evaluate(attempt, gray, tmp_path, "generic")
    assert own.info["eval_preprocessing"] == "own"
    assert s_own.summary()["heldout_dice_mean"] > s_generic.summary()["heldout_dice_mean"] + 0.2


def test_evaluator_sees_heldout_never_the_pool(gray, tmp_path):
    probes = (str(gray.pool), "/data/pool", str(gray.heldout), "/data/heldout")
    out, _ = _evaluate(make_attempt(tmp_path / "p", probes=probes), gray, tmp_path)
    seen = dict(line.rsplit(" ", 1) for line in (out.folder / "scratch" / "probe.txt").read_text().splitlines())
    assert seen == {str(gray.pool): "False", "/data/pool": "False", str(gray.heldout): "False",
                    "/data/heldout": "True"}


def test_unloadable_model_is_a_clear_error(gray, tmp_path):
    attempt = make_attempt(tmp_path / "bad")
    (attempt / "results" / "model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EvaluationError, match="no loadable model file"):
        _evaluate(attempt, gray, tmp_path)
