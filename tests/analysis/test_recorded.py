"""Recorded error counts (the paper's Fig. 2, a user's CSV) beside the platform's, for imported chats."""

from __future__ import annotations

import pandas as pd
import pytest

from llmseg_mlflow.analysis.recorded import compare_recorded, load_recorded
from llmseg_mlflow.analysis.table import build_study
from llmseg_mlflow.errors import UsageError
from tests.analysis.conftest import make_root


def _csv(tmp_path, text: str):
    path = tmp_path / "recorded.csv"
    path.write_text(text)
    return path


def test_platform_counts_and_divergences_beside_the_recorded_ones(tmp_path):
    replayed = {"replay_compared": 4.0}
    roots = [
        make_root("g1", {"errors_total": 4.0, "replay_divergences": 1.0, **replayed}, model="gemini"),
        make_root("g2", {"errors_total": 6.0, "replay_divergences": 3.0, **replayed}, model="gemini", repeat="2"),
        make_root("c1", {"errors_total": 0.0}, model="claude"),
    ]
    recorded = load_recorded(
        _csv(tmp_path, "model,errors,source\ngemini,15,paper\nclaude,0,Fig. 2\nllama,13,paper\nmistral,1-3,paper\n")
    )
    roots.append(make_root("m1", {"errors_total": 4.0}, model="mistral"))
    table = compare_recorded(recorded, build_study(roots, {}).study()).set_index("model")
    assert table.loc["gemini", "pipelines"] == 2 and table.loc["gemini", "platform_errors_mean"] == 5.0
    assert (table.loc["gemini", "platform_errors_min"], table.loc["gemini", "platform_errors_max"]) == (4.0, 6.0)
    assert table.loc["gemini", "difference"] == -10.0 and table.loc["gemini", "replay_divergences"] == 4.0
    assert table.loc["claude", "difference"] == 0.0 and "not a replayed chat" in table.loc["claude", "note"]
    assert (
        table.loc["llama", "pipelines"] == 0 and table.loc["llama", "note"] == "no pipeline of this model in the study"
    )
    assert table.loc["llama", "source"] == "paper"
    assert table.loc["mistral", "recorded_errors"] == "1-3" and table.loc["mistral", "difference"] == 1.0  # 4 vs 3


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("model,count\ngemini,15\n", "missing column(s) errors (found: model, count)"),
        (
            "model,errors\ngemini,many\n",
            "line 2 (gemini): errors must be a whole number >= 0 or a range such as 1-3, got 'many'",
        ),
        ("model,errors\ngemini,3-1\n", "got '3-1'"),
        ("model,errors\n,3\ngemini,-1\n", "line 2: the model is empty; line 3 (gemini)"),
        ("model,errors\ngemini,1\ngemini,2\n", "model gemini is listed more than once"),
        ("model,errors\n", "no rows under the header"),
        ("", "missing column(s) model, errors (found: nothing)"),
    ],
)
def test_a_bad_csv_says_which_line_and_how_to_fix_it(tmp_path, text, says):
    with pytest.raises(UsageError) as exc:
        load_recorded(_csv(tmp_path, text))
    assert says in str(exc.value)


def test_the_report_shows_recorded_beside_platform(default_report):
    table = pd.read_csv(default_report.parent / "tables" / "recorded_errors.csv").set_index("model")
    pipelines = pd.read_csv(default_report.parent / "tables" / "pipelines.csv")
    a24 = pipelines[(pipelines.model == "a24") & (pipelines.role == "pipeline")].errors_total  # no budget reruns
    assert table.loc["a24", "recorded_errors"] == 3 and table.loc["a24", "pipelines"] == len(a24)
    assert table.loc["a24", "platform_errors_mean"] == pytest.approx(a24.mean())
    assert table.loc["not-in-study", "pipelines"] == 0
    html = default_report.read_text()
    assert 'id="table-recorded_errors"' in html and 'id="figure-recorded_errors"' in html
    assert (default_report.parent / "figures" / "recorded_errors.png").is_file()
