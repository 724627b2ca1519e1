"""What sandboxed code leaves in its folders is read and uploaded safely: no links followed, no hang, no huge copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

from llmseg_mlflow.evaluation.evaluator import code_files
from llmseg_mlflow.tracking.runs import RunLogger
from llmseg_mlflow.untrusted import Caps, Skipped, UntrustedFileError, copy_tree, read_bytes, read_text, walk

CANARY = "llmseg-canary-5f1e0c2a"


def in_time(fn, seconds: float = 5.0):
    """fn() run in a thread; fails (instead of hanging the suite) when it does not return in time."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn} still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def hostile(tmp_path) -> Iterator[Path]:
    """An attempt folder as hostile generated code could leave it, secrets next to it."""
    # /proc/self/environ shows a process's environment as it started, so the canary goes in at the start
    # of a harness-like process of the same user, and the link points at that process's environ.
    env = {**os.environ, "LLMSEG_TEST_API_KEY": CANARY}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    deadline = time.monotonic() + 5  # until its exec has finished, the new process's environ reads empty
    while CANARY.encode() not in Path(f"/proc/{proc.pid}/environ").read_bytes():
        assert time.monotonic() < deadline, "the canary never showed in the helper's environ"
        time.sleep(0.01)
    (tmp_path / "secret.txt").write_text(f"API_KEY={CANARY}\n")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "credentials").write_text(CANARY)
    attempt = tmp_path / "attempt"
    (attempt / "results" / "sub").mkdir(parents=True)
    (attempt / "main.py").write_text("print('hello')\n")
    (attempt / "results" / "train_loss.csv").write_text("epoch,loss\n1,0.5\n")
    (attempt / "results" / "env.txt").symlink_to(f"/proc/{proc.pid}/environ")
    (attempt / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (attempt / "home").symlink_to(tmp_path / "home", target_is_directory=True)
    (attempt / "results" / "sub" / "deep.txt").symlink_to("../../../secret.txt")
    (attempt / "zero.bin").symlink_to("/dev/zero")
    (attempt / "self_env.txt").symlink_to("/proc/self/environ")
    yield attempt
    proc.kill()
    proc.wait()


LINKS = {"results/env.txt", "leak.txt", "home", "results/sub/deep.txt", "zero.bin", "self_env.txt"}


def test_walk_lists_regular_files_and_skips_every_link(hostile):
    listing = in_time(lambda: walk(hostile))
    assert listing.files == [hostile / "main.py", hostile / "results" / "train_loss.csv"]
    assert set(listing.skipped) == {Skipped(p, "symlink") for p in LINKS}
    assert {"path": "leak.txt", "reason": "symlink"} in listing.skipped_json()


def test_copy_tree_never_copies_what_a_link_points_to(hostile, tmp_path):
    dest = tmp_path / "copy"
    listing = in_time(lambda: copy_tree(hostile, dest))
    copied = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert copied == ["main.py", "results/train_loss.csv"]
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    assert all(CANARY.encode() not in p.read_bytes() for p in dest.rglob("*") if p.is_file())
    assert {s.path for s in listing.skipped} == LINKS
    assert (dest / "results" / "train_loss.csv").read_text() == "epoch,loss\n1,0.5\n"


def test_a_root_that_is_a_link_is_not_followed(hostile, tmp_path):
    (tmp_path / "logs").symlink_to(tmp_path / "home", target_is_directory=True)
    listing = copy_tree(tmp_path / "logs", tmp_path / "copy")
    assert listing.files == [] and listing.skipped == [Skipped("logs", "symlink")]
    assert not (tmp_path / "copy").exists()


def test_one_file_root_is_copied_and_a_missing_root_is_empty(hostile, tmp_path):
    listing = copy_tree(hostile / "main.py", tmp_path / "one")
    assert listing.files == [hostile / "main.py"] and (tmp_path / "one" / "main.py").is_file()
    assert copy_tree(hostile / "nothing", tmp_path / "none").files == []


def test_a_fifo_never_blocks(tmp_path):
    attempt = tmp_path / "attempt"
    attempt.mkdir()
    os.mkfifo(attempt / "pipe")
    (attempt / "ok.txt").write_text("ok")
    start = time.monotonic()
    listing = in_time(lambda: copy_tree(attempt, tmp_path / "copy"))
    assert listing.skipped == [Skipped("pipe", "fifo")]
    assert listing.files == [attempt / "ok.txt"]
    with pytest.raises(UntrustedFileError, match="fifo"):
        in_time(lambda: read_text(attempt / "pipe"))
    with pytest.raises(UntrustedFileError, match="fifo"):
        in_time(lambda: read_bytes(attempt / "pipe", 10))
    assert time.monotonic() - start < 1.0


def test_a_sparse_50_gb_file_is_skipped_without_copying(tmp_path):
    attempt = tmp_path / "attempt"
    attempt.mkdir()
    with open(attempt / "huge.bin", "wb") as f:
        f.truncate(50 * 1024**3)  # apparent size only: nothing is written to disk
    (attempt / "small.bin").write_bytes(b"x" * 100)
    start = time.monotonic()
    listing = in_time(lambda: copy_tree(attempt, tmp_path / "copy"))
    assert time.monotonic() - start < 1.0
    assert listing.skipped == [Skipped("huge.bin", "over max_file_bytes")]
    assert sum(p.stat().st_size for p in (tmp_path / "copy").rglob("*") if p.is_file()) == 100
    with pytest.raises(UntrustedFileError, match="over max_bytes"):
        read_bytes(attempt / "huge.bin", 1024**2)


def test_total_bytes_cap(tmp_path):
    for name in "abc":
        (tmp_path / name).write_bytes(b"x" * 40)
    listing = walk(tmp_path, Caps(max_total_bytes=100))
    assert [p.name for p in listing.files] == ["a", "b"]
    assert listing.skipped == [Skipped("c", "over max_total_bytes")]


def test_more_files_than_max_files_are_capped_and_listed(tmp_path):
    for i in range(8):
        (tmp_path / f"f{i}.txt").write_text("x")
    listing = walk(tmp_path, Caps(max_files=5))
    assert [p.name for p in listing.files] == [f"f{i}.txt" for i in range(5)]
    assert listing.skipped == [Skipped(f"f{i}.txt", "over max_files") for i in range(5, 8)]


def test_a_folder_of_very_many_entries_stops_the_walk(tmp_path):
    for i in range(50):
        (tmp_path / f"f{i:02d}").write_text("x")
    listing = walk(tmp_path, Caps(max_files=3))
    assert len(listing.files) == 3
    assert [s.reason for s in listing.skipped] == ["over max_files"] * 3 + ["walk stopped: over 2 * max_files entries"]


def test_a_long_path_is_skipped(tmp_path):
    deep = tmp_path / ("d" * 30) / ("e" * 30)
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("x")
    (tmp_path / "short.txt").write_text("x")
    listing = walk(tmp_path, Caps(max_path_len=50))
    assert listing.files == [tmp_path / "short.txt"]
    assert listing.skipped == [Skipped(f"{'d' * 30}/{'e' * 30}", "path too long")]


def test_read_text_keeps_the_end_with_a_marker(tmp_path):
    path = tmp_path / "stderr.log"
    path.write_text("a" * 100 + "Traceback: the end\n")
    text = read_text(path, max_bytes=19)
    assert text == "[llmseg: first 100 bytes truncated]\nTraceback: the end\n"
    assert read_text(tmp_path / "missing.log") == ""
    (tmp_path / "linked.log").symlink_to(path)
    with pytest.raises(UntrustedFileError, match="symlink"):
        read_text(tmp_path / "linked.log")


def test_code_files_reads_no_link_and_no_huge_file(hostile, tmp_path):
    (hostile / "model.py").symlink_to(tmp_path / "secret.txt")
    (hostile / "big.py").write_text("#" * (2 * 1024**2))
    (hostile / "results" / "nested.py").write_text("x = 1\n")
    assert code_files(hostile) == {"main.py": "print('hello')\n"}


def test_untrusted_artifact_uploads_no_secret(hostile, tracking, tmp_path):
    client = MlflowClient()
    exp = client.create_experiment(f"untrusted-{time.time_ns()}")
    run_id = client.create_run(exp).info.run_id
    os.mkfifo(hostile / "results" / "pipe")
    skipped = in_time(lambda: RunLogger(client, run_id).untrusted_artifact(hostile, "attempt"), 30)
    assert {s.path for s in skipped} == LINKS | {"results/pipe"}
    local = Path(download_artifacts(run_id=run_id, artifact_path="", dst_path=str(tmp_path / "dl")))
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert files == ["attempt/main.py", "attempt/results/train_loss.csv", "attempt/skipped_files.json"]
    assert all(CANARY.encode() not in p.read_bytes() for p in local.rglob("*") if p.is_file())
    listed = json.loads((local / "attempt" / "skipped_files.json").read_text())
    assert {d["path"]: d["reason"] for d in listed} == {**{p: "symlink" for p in LINKS}, "results/pipe": "fifo"}
