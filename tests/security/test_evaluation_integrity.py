"""Held-out scores cannot be forged from inside the evaluation sandbox: it never sees a real held-out mask,
and the logs the host reads back lie outside everything it may write."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import PreparedDataset, ensure_prepared
from llmseg_mlflow.evaluation.evaluator import EvalSettings, EvaluationError, code_files, evaluate_attempt
from llmseg_mlflow.evaluation.record import score_heldout
from llmseg_mlflow.pipeline.record import choices
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.evaluation.pipelines import make_attempt

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")

# main.py of a pipeline that cheats: when the worker runs it (to capture its Dataset) it reads every mask
# it can find and swaps the worker's writer for one that saves those masks instead of the predictions.
FORGER_MAIN = """\
import hashlib
import json
import os
import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Subset
from dataset import SegDataset

IMAGE_DIR = "/path/to/images"
MASK_DIR = "/path/to/masks"
SAVE_DIR = "/path/to/save"
NUM_EPOCHS = 5
HOST_HELDOUT = {host!r}


def look(folder):
    seen = {{}}
    for top, _, names in os.walk(folder):
        for name in names:
            if name.endswith("_seg.png"):
                path = os.path.join(top, name)
                with open(path, "rb") as f:
                    raw = f.read()
                seen[name] = (hashlib.sha256(raw).hexdigest(), np.asarray(Image.open(path).convert("L")))
    return seen


if __name__ == "__main__":
    os.makedirs(SAVE_DIR, exist_ok=True)
    seen = {{}}
    for folder in (MASK_DIR, "/data/heldout", HOST_HELDOUT):
        seen.update(look(folder))
    report = {{"masks": {{n: {{"sha256": s, "shape": list(a.shape), "max": int(a.max())}} for n, (s, a) in seen.items()}}}}

    def save():
        with open(os.path.join(SAVE_DIR, "seen.json"), "w") as f:
            json.dump(report, f)

    save()
    honest_savez = np.savez_compressed

    def forged_savez(file, *args, **predictions):
        swapped = []
        for image_name in predictions:
            mask = seen.get(image_name[:-4] + "_seg.png")
            if mask is not None and mask[1].max() > 0:  # a real mask: submit it as the prediction
                predictions[image_name] = (mask[1] > 127).astype(np.uint8)
                swapped.append(image_name)
        report["forger_ran"], report["swapped"] = True, swapped
        save()
        honest_savez(file, *args, **predictions)

    np.savez_compressed = forged_savez
    ds = SegDataset(IMAGE_DIR, MASK_DIR)
    test_loader = DataLoader(Subset(ds, list(range(len(ds)))), batch_size=4)
    for images, masks in test_loader:
        pass
"""

# main.py of a pipeline that swaps the evaluation's log files for links to a file it wants the host to read.
LINKER_MAIN = """\
import os
import sys

TARGET = {target!r}

if __name__ == "__main__":
    for log in ("/workspace/logs/evaluation.stderr.log", "/workspace/logs/evaluation.stdout.log",
                "../logs/evaluation.stderr.log"):
        try:
            os.makedirs(os.path.dirname(log), exist_ok=True)
            if os.path.lexists(log):
                os.remove(log)
            os.symlink(TARGET, log)
            print("linked", log, file=sys.stderr)
        except OSError as exc:
            print("could not link", log, exc, file=sys.stderr)
    print("PIPELINE-GAVE-UP", file=sys.stderr, flush=True)
    os._exit(3)
"""


@pytest.fixture(scope="module")
def gray(shared_home):
    return ensure_prepared(get_dataset("synthetic-gray-suffix"), shared_home / "data")


def _evaluate(attempt: Path, data, dest: Path):
    out = evaluate_attempt(attempt, data, dest, EvalSettings(), choices(code_files(attempt)))
    return out, score_heldout(data, out.predictions)


def test_a_pipeline_cannot_read_or_submit_the_heldout_masks(gray, tmp_path, monkeypatch):
    forger = make_attempt(tmp_path / "forger")
    (forger / "main.py").write_text(FORGER_MAIN.format(host=str(gray.heldout)))
    with ThreadPoolExecutor(max_workers=2) as pool:  # two independent sandboxed evaluations, side by side
        by_honest = pool.submit(_evaluate, make_attempt(tmp_path / "honest"), gray, tmp_path / "eval-honest")
        by_forger = pool.submit(_evaluate, forger, gray, tmp_path / "eval-forged")
        (honest, s_honest), (forged, s_forged) = by_honest.result(), by_forger.result()

    report = json.loads((forged.folder / "scratch" / "seen.json").read_text())
    assert report.get("forger_ran") and forged.info["eval_preprocessing"] == "own"
    # It found a file for every held-out mask, of the real one's size, and every one was blank.
    real = {m.name: m for _, m in gray.heldout_pairs()}
    assert sorted(report["masks"]) == sorted(real)
    assert all(seen["shape"] == list(gray.read_mask(real[name]).shape) for name, seen in report["masks"].items())
    assert all(seen["max"] == 0 for seen in report["masks"].values())
    manifest = json.loads(gray.manifest.read_text())
    real_hashes = {e["sha256"] for e in manifest["files"] if e["split"] == "heldout" and e["role"] == "mask"}
    assert not real_hashes & {seen["sha256"] for seen in report["masks"].values()}
    assert report["swapped"] == []
    # So the score is the network's own, image by image, far from a forged 1.0.
    assert forged.info["eval_preprocessing"] == honest.info["eval_preprocessing"] == "own"
    np.testing.assert_allclose(s_forged.dice, s_honest.dice)
    assert s_forged.summary()["heldout_dice_mean"] < 0.9

    # Control: mounted as before (the real held-out split), the same pipeline scores a perfect 1.0.
    monkeypatch.setattr(PreparedDataset, "blind_heldout", lambda self: self.heldout)
    cheated, s_cheated = _evaluate(forger, gray, tmp_path / "eval-control")
    has_foreground = [gray.read_mask(m).any() for _, m in gray.heldout_pairs()]
    assert all(d == 1.0 for d, fg in zip(s_cheated.dice, has_foreground) if fg)


def test_the_host_never_reads_a_log_the_pipeline_swapped_for_a_link(gray, tmp_path):
    canary = tmp_path / "secret.txt"  # e.g. a key file of the user's
    canary.write_text("llmseg-canary-0b7d3e91\n")
    attempt = make_attempt(tmp_path / "linker")
    (attempt / "main.py").write_text(LINKER_MAIN.format(target=str(canary)))
    dest = tmp_path / "eval"
    with pytest.raises(EvaluationError) as failed:
        evaluate_attempt(attempt, gray, dest, EvalSettings(), choices(code_files(attempt)))
    text = str(failed.value)  # what goes into eval_error.txt
    assert "PIPELINE-GAVE-UP" in text  # the host read the pipeline's real stderr ...
    assert "llmseg-canary-0b7d3e91" not in text  # ... and never the file it linked to
    for log in (dest / "logs").iterdir():
        assert log.is_file() and not log.is_symlink()
        assert "llmseg-canary" not in log.read_text()
