"""The harness always answers: a platform failure mid-pipeline ends with a JSON line, exit 1, and a FAILED root
that says why in one line; exit 2 is kept for bad input found before any run exists."""

from __future__ import annotations

import json

from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from llmseg_mlflow import generate
from llmseg_mlflow.cli import main
from tests.replies import FILES, as_reply, write_replies


def test_a_platform_failure_mid_pipeline_is_harness_error_with_json_and_exit_1(
    tracking, llmseg_home, tmp_path, monkeypatch
):
    replies = write_replies(tmp_path / "replies", [as_reply(FILES)])

    def broken(*_args, **_kw):  # the disk under the artifact store fills while the curves are logged
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(generate, "log_training", broken)
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            f"replay:{replies}",
            "--dataset",
            "synthetic-gray-suffix",
            "--study",
            "t-harness",
            "--epochs",
            "1",
            "--max-batches",
            "2",
            "--no-preflight",
        ],
    )
    assert result.exit_code == 1, (result.output, result.stderr)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["status"] == "harness_error" and line["error"] == "OSError: [Errno 28] No space left on device"
    client = MlflowClient()
    root = client.get_run(line["run_id"])
    assert root.info.status == "FAILED" and root.data.tags["status"] == "harness_error"
    assert root.data.tags["error"] == line["error"]  # one line
    names = {a.path for a in client.list_artifacts(root.info.run_id)}
    assert {"harness_error.txt", "prompt.md", "chat"} <= names  # what was logged before stays
    assert "Traceback" in open(client.download_artifacts(root.info.run_id, "harness_error.txt", str(tmp_path))).read()


def test_bad_input_before_any_run_is_exit_2(tracking, llmseg_home):
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            "replay:/nonexistent/folder",
            "--dataset",
            "synthetic-gray-suffix",
            "--study",
            "t-harness-input",
        ],
    )
    assert result.exit_code == 2 and "/nonexistent/folder" in result.stderr
    assert MlflowClient().get_experiment_by_name("t-harness-input") is None
    result = CliRunner().invoke(
        main,
        ["generate", "--model", "replay:/nonexistent/folder", "--dataset", "synthetic-gray-suffix", "--disk-gb", "0"],
    )
    assert result.exit_code == 2
