"""The Appendix D prompt: filled from each dataset entry, versioned in MLflow's prompt registry."""

from __future__ import annotations

import pytest

from llmseg_mlflow.catalog.datasets import load_datasets
from llmseg_mlflow.pipeline import prompt


def test_every_dataset_fills_every_bracket():
    template = prompt.load_template()
    for spec in load_datasets().values():
        text = prompt.render(template, spec.prompt_fills(n_total=100))
        assert "{{" not in text and "[" not in text.replace("[0, 1]", ""), spec.key
        assert text.startswith("in separate scrips below")  # the paper's text, typos included
        assert "train_losses.xlsx" in text and '"validation_dice_scores"' in text


def test_layouts_tell_the_llm_the_truth():
    template = prompt.load_template()
    specs = load_datasets()
    suffix = prompt.render(template, specs["synthetic-gray-suffix"].prompt_fills(n_total=100))
    folders = prompt.render(template, specs["synthetic-rgb-folders"].prompt_fills(n_total=100))
    assert "_seg.png" in suffix and "grayscale" in suffix
    assert "2 different folders" in folders and "RGB" in folders


def test_missing_fill_is_named():
    with pytest.raises(ValueError, match="colour_word"):
        prompt.render("images are {{colour_word}}", {})


def test_registered_once_per_text(tracking):
    first = prompt.register("Segment {{colour_word}} images.", name="t-prompt")
    again = prompt.register("Segment {{colour_word}} images.", name="t-prompt")
    changed = prompt.register("Segment {{colour_word}} images, please.", name="t-prompt")
    assert first.version == again.version
    assert changed.version == first.version + 1 and changed.uri == f"prompts:/t-prompt/{changed.version}"


def test_parallel_first_registrations_all_succeed(tracking):
    """Sweep workers on a fresh server register the template at the same moment; none may fail."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    name = f"race-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda _: prompt.register("same text {{x}}", name=name), range(4)))
    assert all(r.template == "same text {{x}}" for r in done) and all(r.version >= 1 for r in done)
