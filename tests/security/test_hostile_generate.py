"""A hostile pipeline through the whole `generate` job: nothing secret is stored or sent, nothing hangs.

The pipeline trains for real and then leaves what a hostile LLM would: links to the harness's
environment, to a file in the user's home, to /dev/zero, a `*.py` link, a FIFO named like a results
file. Its first version also prints its whole environment into the traceback the LLM is sent.
"""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from llmseg_mlflow.generate import GenerateConfig, run_generate
from tests.replies import FILES, as_reply, write_replies

KEY = "sk-canary-0b9e1f7c"
SECRET = "canary-file-content-5d2a"
HOSTILE = """
    import json
    for link, target in (("env.txt", "/proc/self/environ"), ("notes.txt", {secret_path!r}),
                         ("zero.bin", "/dev/zero")):
        os.symlink(target, os.path.join(SAVE_PATH, link))
    os.symlink({secret_path!r}, "helpers.py")  # a *.py the harness would read as code
    os.makedirs(os.path.join(SAVE_PATH, "copy"))
    os.mkfifo(os.path.join(SAVE_PATH, "copy", "train_losses.xlsx"))  # newest file of that name
"""


def _all_artifacts(client: MlflowClient, run_id: str, dest: Path) -> list[Path]:
    local = Path(client.download_artifacts(run_id, "", str(dest / run_id)))
    return [p for p in local.rglob("*") if p.is_file()]


def test_hostile_pipeline_leaks_nothing_and_ends(tracking, llmseg_home, tmp_path, monkeypatch):
    secret = tmp_path / "home" / "secrets.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # in the harness's environment, as for any API model
    hostile_main = FILES["main.py"] + HOSTILE.format(secret_path=str(secret))
    first = {
        **FILES,
        "main.py": hostile_main.replace(
            "    os.makedirs(SAVE_PATH, exist_ok=True)\n",
            "    os.makedirs(SAVE_PATH, exist_ok=True)\n    raise RuntimeError(json.dumps(dict(os.environ)))\n",
        ),
    }
    replies = write_replies(
        tmp_path / "replies", [as_reply(first), "Fixed:\n\n```python\n# main.py\n" + hostile_main + "```\n"]
    )
    start = time.monotonic()
    result = run_generate(  # no preflight: the environment dump fails the (1-epoch, 2-batch) full run instead
        GenerateConfig(
            model=f"replay:{replies}",
            dataset="synthetic-gray-suffix",
            study="t-hostile",
            epochs=1,
            max_batches=2,
            preflight=False,
        )
    )
    assert time.monotonic() - start < 300
    assert result.status == "succeeded", result
    client = MlflowClient()
    root = client.get_run(result.run_id)
    runs = [root, *client.search_runs([root.info.experiment_id], f"tags.mlflow.parentRunId = '{root.info.run_id}'")]
    assert [r.data.tags["kind"] for r in runs].count("debug") == 1  # the environment dump was fed back
    for run in runs:
        for value in [*run.data.params.values(), *run.data.tags.values()]:
            assert KEY not in value and SECRET not in value
        for path in _all_artifacts(client, run.info.run_id, tmp_path / "dl"):
            data = path.read_bytes()
            assert KEY.encode() not in data and SECRET.encode() not in data, path
    training = next(r for r in runs if r.data.tags["kind"] == "training")
    skipped = {s["path"]: s["reason"] for s in _skipped(client, training.info.run_id, tmp_path)}
    assert {
        "results/env.txt",
        "results/notes.txt",
        "results/zero.bin",
        "helpers.py",
        "results/copy/train_losses.xlsx",
    } <= set(skipped), skipped
    assert len(client.get_metric_history(training.info.run_id, "train_loss")) == 1  # the real file was read


def _skipped(client: MlflowClient, run_id: str, tmp_path: Path) -> list[dict]:
    import json

    return json.loads(
        Path(client.download_artifacts(run_id, "attempt/skipped_files.json", str(tmp_path / "skipped"))).read_text()
    )
