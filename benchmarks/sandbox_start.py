"""What the sandbox adds to start a program: `python -c pass` bare vs through `sandbox.run` (bwrap + cgroup).

Interleaved repeats; prints the median of each variant, the added milliseconds and the ratio. The
sandbox's start cost is paid once per execution (a training runs minutes), so only its size matters.

    .venv/bin/python benchmarks/sandbox_start.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmseg_mlflow.pipeline import cgroups, sandbox  # noqa: E402


def main() -> None:
    """Time both variants and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmseg-start-"))
    (work / "attempt").mkdir()
    times: dict[str, list[float]] = {"bare": [], "sandbox": []}
    limits = sandbox.Limits(timeout_s=60, memory_gb=2)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times["bare"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = sandbox.run(
            [sys.executable, "-c", "pass"], sandbox.Mounts(work / "attempt"), limits, log_dir=work / "logs"
        )
        assert result.ok, result.stderr_text()
        times["sandbox"].append(time.perf_counter() - t0)
    bare, boxed = (statistics.median(times[k]) for k in ("bare", "sandbox"))
    print(f"limits enforced by: {cgroups.support().enforced}")
    print(
        f"median start+exit: bare {bare * 1000:.0f} ms, sandbox {boxed * 1000:.0f} ms "
        f"(+{(boxed - bare) * 1000:.0f} ms, {boxed / bare:.2f}x) over {args.repeats} interleaved runs"
    )


if __name__ == "__main__":
    main()
