"""Independent CLI processes started together and checked after: their import time overlaps."""

from __future__ import annotations

import subprocess


def finish(proc: subprocess.Popen, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """Wait for a process started with text pipes; kill it when it runs past timeout_s."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
