"""The report's cost and whole-study sections, end to end on the session's synthetic study."""

from __future__ import annotations

import pandas as pd

from tests.analysis.conftest import OFF_DISK, ON_DISK


def test_report_has_the_cost_and_study_model_sections(default_report):
    report = default_report
    html = report.read_text()
    out = report.parent
    for anchor in ('id="cost"', 'id="study_model"', 'id="table-efficiency"', 'id="table-pass_at_k"'):
        assert anchor in html
    assert 'id="table-study_model"' in html and 'id="table-study_ranks"' in html
    assert "trust the rank check" in html
    for dataset in (ON_DISK, OFF_DISK):
        assert f'id="figure-pareto_{dataset}"' in html and (out / "figures" / f"pareto_{dataset}.png").is_file()
    passes = pd.read_csv(out / "tables" / "pass_at_k.csv")
    # a24 never ran on OFF_DISK in one of its 2 repeats: pass@1 = 1/2, pass@2 = 1.
    a24 = passes[(passes.model == "a24") & (passes.dataset == OFF_DISK) & (passes.criterion == "runs")]
    assert a24.set_index("k").pass_at_k.to_dict() == {1: 0.5, 2: 1.0}
    coefs = pd.read_csv(out / "tables" / "study_model.csv")
    assert {"year", "reasoning"} <= set(coefs.term)
