"""The MLflow UI in headless Chromium: the runs page the demo points to lists the pipelines by name."""

from __future__ import annotations

import html
import re
import subprocess

from mlflow.tracking import MlflowClient

from llmseg_mlflow.tracking.runs import RunTree
from llmseg_mlflow.tracking.schema import Cohort
from tests.analysis.test_report_browser import _chromium


def _page_text(browser: str, url: str, profile) -> list[str]:
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    body = re.sub(r"<script.*?</script>|<style.*?</style>", "", proc.stdout, flags=re.S)
    return [html.unescape(t).strip() for t in re.split(r"<[^>]+>", body) if t.strip()]


def test_the_runs_page_lists_the_pipeline_roots_by_model_and_dataset(tracking, tmp_path):
    browser = _chromium()
    client = MlflowClient()
    tree = RunTree.open(client, Cohort("gpt-4o", 2024, False, "bagls", 1, "t-ui", "openai"))
    tree.root.tags({"status": "succeeded"})
    tree.finish()
    text = _page_text(browser, f"{tracking}/#/experiments/{tree.experiment_id}/runs", tmp_path / "profile")
    assert "Training runs" in text, text[:80]
    assert "gpt-4o/bagls/r1" in text  # the run name leads with model and dataset
    experiment = client.get_experiment(tree.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
