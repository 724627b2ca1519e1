"""The sandboxed evaluator on hand-made pipelines: loading, output kinds, preprocessing, data discipline."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmseg_mlflow.catalog.datasets import SyntheticSpec, get_dataset
from llmseg_mlflow.catalog.prepare import ensure_prepared
from llmseg_mlflow.evaluation.evaluator import EvalSettings, EvaluationError, code_files, evaluate_attempt
from llmseg_mlflow.evaluation.record import score_heldout
from llmseg_mlflow.pipeline.record import choices
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.evaluation.pipelines import make_attempt, run_save_script

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")


@pytest.fixture(scope="module")
def gray(shared_home):
    return ensure_prepared(get_dataset("synthetic-gray-suffix"), shared_home / "data")


@pytest.fixture(scope="module")
def rgb(shared_home):
    return ensure_prepared(get_dataset("synthetic-rgb-folders"), shared_home / "data")


def _evaluate(attempt: Path, data, tmp_path: Path, preprocessing: str = "auto"):
    out = evaluate_attempt(
        attempt, data, tmp_path / f"eval-{preprocessing}", EvalSettings(preprocessing), choices(code_files(attempt))
    )
    return out, score_heldout(data, out.predictions)


def _evaluate_both(first: tuple, second: tuple) -> list:
    """Two independent evaluations (each a sandboxed Python: seconds of imports on one core) side by side."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_evaluate, *args) for args in (first, second)]
        return [job.result() for job in jobs]


@pytest.fixture(scope="module")
def plain(gray, tmp_path_factory):
    """The default hand-made pipeline (whole model, logits, full size) evaluated once: the reference that
    each variant below is compared with."""
    tmp = tmp_path_factory.mktemp("plain")
    return _evaluate(make_attempt(tmp / "attempt"), gray, tmp)


def test_whole_model_and_state_dict_score_the_same(gray, plain, tmp_path):
    whole, s_whole = plain
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


def test_sigmoid_outputs_are_not_squashed_twice(gray, plain, tmp_path):
    logits, s_logits = plain
    probs, s_probs = _evaluate(make_attempt(tmp_path / "p", sigmoid=True), gray, tmp_path / "p")
    assert logits.info["eval_output"] == "logits" and probs.info["eval_output"] == "probabilities"
    np.testing.assert_allclose(s_logits.dice, s_probs.dice)  # sigmoid twice would threshold at 0.73


def test_half_size_outputs_are_brought_to_the_ground_truth(gray, plain, tmp_path):
    full, s_full = plain
    half, s_half = _evaluate(make_attempt(tmp_path / "h", half=True), gray, tmp_path / "h")
    assert all(m.shape == (64, 64) for m in half.predictions.values())
    assert abs(s_half.summary()["heldout_dice_mean"] - s_full.summary()["heldout_dice_mean"]) < 0.1


def test_frames_of_mixed_sizes_are_each_scored_at_their_own_size(gray, plain, tmp_path):
    # BAGLS mixes frame sizes; a pipeline whose net halves its input is brought back per frame, not per batch
    sizes = ((64, 64), (96, 64), (64, 40))
    synthetic = SyntheticSpec(n=40, seed=gray.spec.synthetic.seed, sizes=sizes)
    spec = gray.spec.model_copy(update={"key": "synthetic-gray-mixed", "synthetic": synthetic})
    mixed = ensure_prepared(spec, tmp_path / "data")
    out, scores = _evaluate(make_attempt(tmp_path / "m", half=True), mixed, tmp_path / "m")
    truth = {p.name: np.asarray(Image.open(m)).shape for p, m in mixed.heldout_pairs()}
    assert {name: m.shape for name, m in out.predictions.items()} == truth and len(set(truth.values())) > 1
    assert scores.summary()["heldout_dice_mean"] > 0.3


def test_rgb_pipeline_reads_three_channels(rgb, tmp_path):
    # lesions are darker than skin: foreground where the channel mean is below ~0.45
    attempt = make_attempt(tmp_path / "rgb", rgb=True, suffix="", weight=-10.0, bias=4.5)
    (own, s_own), (generic, s_generic) = _evaluate_both((attempt, rgb, tmp_path), (attempt, rgb, tmp_path, "generic"))
    assert own.info["eval_preprocessing"] == "own" and generic.info["eval_preprocessing"] == "generic"
    assert s_own.summary()["heldout_dice_mean"] > 0.3
    np.testing.assert_allclose(s_own.dice, s_generic.dice, atol=0.05)  # same [0, 1] inputs either way


def test_own_preprocessing_wins_for_a_z_scoring_pipeline(gray, tmp_path):
    attempt = make_attempt(tmp_path / "z", zscore=True, weight=4.0, bias=-4.0)  # foreground where z > 1
    (own, s_own), (generic, s_generic) = _evaluate_both((attempt, gray, tmp_path), (attempt, gray, tmp_path, "generic"))
    assert own.info["eval_preprocessing"] == "own"
    assert s_own.summary()["heldout_dice_mean"] > s_generic.summary()["heldout_dice_mean"] + 0.2


def test_evaluator_sees_heldout_never_the_pool(gray, tmp_path):
    probes = (str(gray.pool), "/data/pool", str(gray.heldout), "/data/heldout")
    out, _ = _evaluate(make_attempt(tmp_path / "p", probes=probes), gray, tmp_path)
    seen = dict(line.rsplit(" ", 1) for line in (out.folder / "scratch" / "probe.txt").read_text().splitlines())
    assert seen == {str(gray.pool): "False", "/data/pool": "False", str(gray.heldout): "False", "/data/heldout": "True"}


def test_unloadable_model_is_a_clear_error(gray, tmp_path):
    attempt = make_attempt(tmp_path / "bad")
    (attempt / "results" / "model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EvaluationError, match="no loadable model file"):
        _evaluate(attempt, gray, tmp_path)


SPLIT_LISTS_DATASET = """\
import os
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class SegmentationDataset(Dataset):
    def __init__(self, image_dir, mask_dir, files, transform=None):
        self.image_dir, self.mask_dir, self.files, self.transform = image_dir, mask_dir, files, transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, idx):
        name = self.files[idx]
        img = Image.open(os.path.join(self.image_dir, name)).convert("L")
        mask = Image.open(os.path.join(self.mask_dir, name[:-4] + "_seg.png")).convert("L")
        img = self.transform(img) if self.transform else torch.from_numpy(np.asarray(img, np.float32)[None] / 255)
        return img, torch.from_numpy((np.asarray(mask) > 127).astype(np.float32)[None])
"""

SPLIT_LISTS_MAIN = """\
import os
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader
from torchvision import transforms
from dataset import SegmentationDataset

IMAGE_DIR = "/path/to/images"
MASK_DIR = "/path/to/masks"

if __name__ == "__main__":
    files = sorted(f for f in os.listdir(IMAGE_DIR) if f.endswith(".png") and not f.endswith("_seg.png"))
    train_files, rest = train_test_split(files, test_size=0.3, random_state=1)
    val_files, test_files = train_test_split(rest, test_size=0.5, random_state=1)
    tf = transforms.Compose([transforms.ToTensor()])
    loaders = [DataLoader(SegmentationDataset(IMAGE_DIR, MASK_DIR, f, transform=tf), batch_size=2, num_workers=4,
                          shuffle=i == 0, persistent_workers=True) for i, f in enumerate((train_files, val_files, test_files))]
    for images, masks in loaders[0]:
        pass
"""


def test_a_plain_dataset_over_split_file_lists_with_workers_is_captured(gray, tmp_path):
    attempt = make_attempt(tmp_path / "lists", save="state_dict")
    (attempt / "dataset.py").write_text(SPLIT_LISTS_DATASET)
    (attempt / "main.py").write_text(SPLIT_LISTS_MAIN)
    other = make_attempt(tmp_path / "plain", save="state_dict")
    (own, s_own), (_, s_generic) = _evaluate_both((attempt, gray, tmp_path), (other, gray, tmp_path, "generic"))
    assert own.info["eval_preprocessing"] == "own", own.info.get("eval_fallback_reason")
    # ToTensor is the same [0, 1] scaling; generic resizes to 256 and back, so edges differ a little
    np.testing.assert_allclose(s_own.dice, s_generic.dice, atol=0.05)
    assert s_own.summary()["heldout_dice_mean"] > 0.3


DECODER_FIRST_MODEL = """\
import torch.nn as nn
import torch.nn.functional as F


class ThresholdNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 1, 1)  # registered first, runs last: 3 is not what the network takes
        self.conv = nn.Conv2d(1, 3, 1)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)))
"""

DECODER_FIRST_SAVE = """\
import torch
from model import ThresholdNet

m = ThresholdNet()
with torch.no_grad():
    m.conv.weight.fill_(10.0); m.conv.bias.fill_(-6.0)
    m.head.weight.fill_(1.0); m.head.bias.fill_(-0.5)
torch.save(m, "results/model.pth")
"""


def test_generic_fallback_feeds_the_channels_of_the_first_convolution_that_runs(rgb, tmp_path):
    attempt = make_attempt(tmp_path / "dec", rgb=True, suffix="")
    (attempt / "model.py").write_text(DECODER_FIRST_MODEL)
    run_save_script(attempt, DECODER_FIRST_SAVE)
    out, scores = _evaluate(attempt, rgb, tmp_path)  # its Dataset gives RGB, the network wants gray
    assert out.info["eval_preprocessing"] == "generic" and out.info["eval_input_channels"] == 1
    assert "3 channels, the model wants 1" in out.info["eval_fallback_reason"]
    assert len(scores.dice) == rgb.n_heldout


POOL_SIZED_SPLIT_MAIN = """\\
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Subset
from dataset import SegDataset

IMAGE_DIR = "/path/to/images"
MASK_DIR = "/path/to/masks"

if __name__ == "__main__":
    ds = SegDataset(IMAGE_DIR, MASK_DIR)
    train_idx, test_idx = train_test_split(list(range(len(ds))), test_size=50)  # fine on the pool, not on 10 images
    loader = DataLoader(Subset(ds, train_idx), batch_size=4)
"""


def test_a_dataset_made_before_main_fails_on_the_small_heldout_set_is_still_used(gray, tmp_path):
    attempt = make_attempt(tmp_path / "early")
    (attempt / "main.py").write_text(POOL_SIZED_SPLIT_MAIN)
    out, scores = _evaluate(attempt, gray, tmp_path)
    assert out.info["eval_preprocessing"] == "own", out.info.get("eval_fallback_reason")
    assert scores.summary()["heldout_dice_mean"] > 0.3


def test_items_are_matched_through_paths_pairs_or_records():
    from llmseg_mlflow.evaluation.worker import item_names

    class Pairs:
        def __init__(self, entries):
            self.transform, self.samples = None, entries

    names = ["1.png", "2.png"]
    assert item_names(Pairs([Path("/h/2.png"), Path("/h/1.png")]), 2, names) == ["2.png", "1.png"]
    assert item_names(Pairs([("/h/1.png", "/h/1_seg.png"), ("/h/2.png", "/h/2_seg.png")]), 2, names) == names
    assert item_names(Pairs([{"image": "/h/2.png", "mask": "/m/2.png"}, {"image": "/h/1.png"}]), 2, names) == [
        "2.png",
        "1.png",
    ]
    assert item_names(Pairs([("/h/1.png", 0), ("/h/9.png", 1)]), 2, names) is None  # not all held-out images
