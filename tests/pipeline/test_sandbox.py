"""The sandbox's promises, checked with real bubblewrap and hostile 'generated' programs."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest

from llmseg_mlflow.pipeline import sandbox
from llmseg_mlflow.pipeline.errors import classify

pytestmark = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="needs bubblewrap (apt-get install bubblewrap)")


@pytest.fixture
def place(tmp_path):
    """An attempt folder, a read-only pool and a held-out folder the code must not see."""
    work, pool, heldout = tmp_path / "attempt", tmp_path / "pool", tmp_path / "heldout"
    for d in (work, pool, heldout):
        d.mkdir()
    (pool / "1.png").write_bytes(b"img")
    (heldout / "secret.png").write_bytes(b"img")
    return work, pool, heldout


def _run(work: Path, pool: Path, code: str, limits=None, env=None):
    limits = limits or sandbox.Limits(timeout_s=60)
    (work / "main.py").write_text(textwrap.dedent(code))
    return sandbox.run(
        [sys.executable, "main.py"], sandbox.Mounts(work, (pool,)), limits, log_dir=work.parent / "logs", env=env
    )


def test_api_keys_and_tracking_variables_are_not_visible(place, monkeypatch):
    work, pool, _ = place
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-secret")
    result = _run(
        work,
        pool,
        f"""
        import os
        print(sorted(k for k in os.environ if "KEY" in k or "TOKEN" in k or k.startswith("MLFLOW")))
        try:
            print(open("/proc/{os.getpid()}/environ").read())
        except OSError as exc:
            print("no harness environ:", type(exc).__name__)
    """,
    )
    out = result.stdout_text()
    assert result.ok, result.stderr_text()
    assert "[]" in out and "sk-test-secret" not in out and "tok-secret" not in out
    assert "no harness environ" in out


def test_no_network_not_even_the_tracking_server(place, mlflow_server):
    work, pool, _ = place
    port = urlparse(mlflow_server).port
    result = _run(
        work,
        pool,
        f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=3)
    """,
    )
    assert not result.ok
    assert classify(result, 60, 16).error_type in ("ConnectionRefusedError", "OSError")


@pytest.mark.parametrize("target", ["pool", "home", "cwd_parent"])
def test_writes_outside_the_attempt_folder_fail(place, target):
    work, pool, _ = place
    path = {
        "pool": pool / "x.txt",
        "home": Path.home() / f"llmseg-{uuid.uuid4().hex}.txt",
        "cwd_parent": work.parent / "escape.txt",
    }[target]
    result = _run(work, pool, f"open({str(path)!r}, 'w').write('x')\nprint('wrote')")
    assert not path.exists()  # nothing reaches the host
    if target == "cwd_parent":
        return  # under /tmp here, which is the sandbox's private tmpfs: the write lands there and vanishes
    assert not result.ok
    assert classify(result, 60, 16).error_type in ("OSError", "FileNotFoundError", "PermissionError")


def test_attempt_folder_is_writable_and_pool_readable(place):
    work, pool, _ = place
    result = _run(
        work,
        pool,
        f"""
        import os
        print(os.listdir({str(pool)!r}))
        open("out.txt", "w").write("ok")
    """,
    )
    assert result.ok, result.stderr_text()
    assert "1.png" in result.stdout_text() and (work / "out.txt").read_text() == "ok"


def test_heldout_and_home_cannot_be_listed(place):
    work, pool, heldout = place
    result = _run(
        work,
        pool,
        f"""
        import os
        for p in ({str(heldout)!r}, {str(Path.home())!r}):
            try:
                print(p, os.listdir(p))
            except OSError as exc:
                print(p, "hidden", type(exc).__name__)
        os.listdir({str(heldout)!r})
    """,
    )
    assert not result.ok
    assert "secret.png" not in result.stdout_text()
    assert classify(result, 60, 16).error_type == "FileNotFoundError"


def test_timeout_kills_the_whole_tree_including_daemons(place):
    work, pool, _ = place
    marker = f"llmseg-orphan-{uuid.uuid4().hex}"
    result = _run(
        work,
        pool,
        f"""
        import os, subprocess, sys, time
        from torch.utils.data import DataLoader  # noqa: F401 - like a real pipeline
        if os.fork() == 0:           # a double-forked daemon, detached from everything
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "300", {marker!r}])
            os._exit(0)
        subprocess.Popen(["sleep", "301", {marker!r}])
        time.sleep(300)
    """,
        limits=sandbox.Limits(timeout_s=8),
    )
    assert result.timed_out and not result.ok
    assert classify(result, 8, 16).error_type == "Timeout"
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_memory_cap_stops_the_program(place):
    work, pool, _ = place
    result = _run(
        work,
        pool,
        """
        import time
        blocks = []
        for _ in range(200):
            blocks.append(b"x" * (50 * 1024 * 1024))  # touched pages count
            time.sleep(0.05)
    """,
        limits=sandbox.Limits(timeout_s=60, memory_gb=1.0),
    )
    assert not result.ok
    assert classify(result, 60, 1.0).error_type == "OutOfMemory"


def test_output_is_capped(place):
    work, pool, _ = place
    result = _run(
        work,
        pool,
        "import sys\nfor _ in range(20000): sys.stdout.write('x' * 100 + '\\n')",
        limits=sandbox.Limits(timeout_s=60, output_mb=0.1),
    )
    assert result.ok
    assert result.stdout_path.stat().st_size < 200 * 1024
    assert "truncated" in result.stdout_text() and result.truncated == ["run.stdout.log"]


def test_max_batches_caps_every_dataloader_from_outside(place):
    work, pool, _ = place
    result = _run(
        work,
        pool,
        """
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        loader = DataLoader(TensorDataset(torch.arange(100)), batch_size=4)
        print(len(loader), sum(1 for _ in loader))
    """,
        env={"LLMSEG_MAX_BATCHES": "2"},
    )
    assert result.ok, result.stderr_text()
    assert result.stdout_text().split() == ["2", "2"]


def test_the_cap_marks_a_run_only_when_it_withheld_batches(place):
    """A loader asked past the cap, with batches left, marks the run: its failure may be the cap's."""
    work, pool, _ = place
    mark = work / "cut"
    code = """
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        loader = DataLoader(TensorDataset(torch.arange({n})), batch_size=4)
        {use}
    """
    cases = {
        ("100", "next(iter(loader)); print(len(loader))"): False,  # stopped before the cap
        ("8", "print(len(list(loader)))"): False,  # 2 batches: the cap withheld nothing
        ("100", "print(len(list(loader)))"): True,  # 25 batches, 2 let through
    }
    for (n, use), cut in cases.items():
        mark.unlink(missing_ok=True)
        result = _run(
            work, pool, code.format(n=n, use=use), env={"LLMSEG_MAX_BATCHES": "2", "LLMSEG_CAP_MARK": str(mark)}
        )
        assert result.ok, result.stderr_text()
        assert result.stdout_text().split() == ["2"]
        assert mark.exists() is cut, (n, use)


def test_missing_bwrap_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install -y bubblewrap"):
        sandbox.require_bwrap()


def test_long_runs_report_their_latest_output(place):
    work, pool, _ = place
    ticks: list[tuple[float, str]] = []
    result = sandbox.run(
        [
            sys.executable,
            "-c",
            "import sys, time\nfor i in range(6):\n"
            "    sys.stderr.write(f'\\rEpoch {i}'); sys.stderr.flush(); time.sleep(0.5)",
        ],
        sandbox.Mounts(work, (pool,)),
        sandbox.Limits(timeout_s=60),
        log_dir=work.parent / "logs",
        on_tick=lambda s, line: ticks.append((s, line)),
        tick_s=1.0,
    )
    assert result.ok and len(ticks) >= 2
    assert all(line.startswith("Epoch ") for _, line in ticks) and ticks[-1][1] != "Epoch 0"
