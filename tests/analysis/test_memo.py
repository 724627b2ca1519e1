"""Sections replayed for an unchanged study: the same outputs without the computation, and never when stale."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from llmseg_mlflow.analysis import AnalyzeConfig
from llmseg_mlflow.analysis.cache import RunCache
from llmseg_mlflow.analysis.config import Cohorts
from llmseg_mlflow.analysis.fetch import Root
from llmseg_mlflow.analysis.memo import SectionMemo, study_key
from llmseg_mlflow.analysis.outputs import Outputs


def _draw(values: list[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot(values)
    fig.savefig(path)
    plt.close(fig)


class Section:
    """A section writing one table, one figure, notes and a message; counts how often it is computed."""

    def __init__(self) -> None:
        self.computed = 0

    def __call__(self, out: Outputs, say) -> None:
        self.computed += 1
        out.table("scores", "Scores", "dice", pd.DataFrame({"model": ["a", "b"], "dice": [0.5, 0.75]}), "a note")
        out.table("empty", "Nothing", "dice", pd.DataFrame())
        out.figure("curve", "Curve", "dice", _draw, [1.0, 0.5, 0.25])
        out.section_notes.setdefault("dice", []).append("n too small for b")
        say("dice: done")


def _analyze(tmp_path: Path, name: str, key: str | None, section: Section) -> tuple[Outputs, list[str], SectionMemo]:
    cache = RunCache(tmp_path / "cache")
    out = Outputs(tmp_path / name, cache)
    said: list[str] = []
    memo = SectionMemo(cache, key)
    memo.run("section_demo", out, said.append, lambda say: section(out, say))
    out.finish()
    return out, said, memo


def _shape(out: Outputs) -> tuple:
    tables = [(t.name, t.title, t.note, t.frame.to_dict("list")) for t in out.tables]
    figures = [(f.name, f.title, f.path.read_bytes()) for f in out.figures]
    return tables, figures, out.notes, out.section_notes


def test_an_unchanged_study_replays_the_section_to_the_same_outputs(tmp_path):
    section = Section()
    first, said_first, _ = _analyze(tmp_path, "r1", "k1", section)
    second, said_second, memo = _analyze(tmp_path, "r2", "k1", section)
    assert section.computed == 1 and memo.replayed == 1
    assert _shape(first) == _shape(second)
    assert said_first == said_second == ["dice: done"]
    assert second.notes == ["Nothing: nothing to show in this study."]  # once, not once per replay
    assert (tmp_path / "r2" / "tables" / "scores.csv").read_bytes() == (
        tmp_path / "r1" / "tables" / "scores.csv"
    ).read_bytes()


def test_a_new_key_or_a_figure_gone_from_the_cache_computes_the_section_again(tmp_path):
    section = Section()
    _analyze(tmp_path, "r1", "k1", section)
    _analyze(tmp_path, "r2", "k2", section)
    assert section.computed == 2
    for png in (tmp_path / "cache" / "rendered").glob("*.png"):
        png.unlink()
    _, _, memo = _analyze(tmp_path, "r3", "k2", section)
    assert section.computed == 3 and memo.replayed == 0
    assert (tmp_path / "r3" / "figures" / "curve.png").is_file()
    assert len(list((tmp_path / "cache" / "sections").glob("section_demo-*.pkl"))) == 1  # older states dropped


def test_without_a_key_every_section_is_computed(tmp_path):
    section = Section()
    _analyze(tmp_path, "r1", None, section)
    _analyze(tmp_path, "r2", None, section)
    assert section.computed == 2


def _root(run_id: str, **kw) -> Root:
    base = Root(run_id, run_id, "1", "FINISHED", 0, 10, {"status": "trained"}, {}, {"heldout_dice_mean": 0.8})
    return dataclasses.replace(base, **kw)


def test_the_study_key_follows_every_input_and_nothing_else(tmp_path):
    roots = [_root("a"), _root("b")]
    cfg = AnalyzeConfig(study="s", output=tmp_path / "out")
    key = study_key(roots, "series-1", cfg, Cohorts())
    assert key == study_key(
        list(reversed(roots)), "series-1", cfg.model_copy(update={"output": tmp_path / "x"}), Cohorts()
    )
    changed = [
        study_key([_root("a"), _root("b", metrics={"heldout_dice_mean": 0.7})], "series-1", cfg, Cohorts()),
        study_key(roots, "series-2", cfg, Cohorts()),
        study_key(roots, "series-1", cfg.model_copy(update={"alpha": 0.01}), Cohorts()),
        study_key(roots, "series-1", cfg, Cohorts(overrides={"a": {"year": "2025"}})),
        study_key(roots[:1], "series-1", cfg, Cohorts()),
    ]
    assert key not in changed and len(set(changed)) == len(changed)
    assert study_key([_root("a"), _root("b", status="RUNNING")], "series-1", cfg, Cohorts()) is None
