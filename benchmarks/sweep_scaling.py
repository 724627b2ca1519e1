"""Sweep scaling: 8 tiny pipelines with 1 and 2 local workers, then with Ray; into a real tracking server.

Prints the wall time of each, the speedup of 2 workers over 1 (target >= 1.6x on a 2-core machine) and
the executors' overhead per job: seconds the driver saw a job take minus seconds spent inside the job
(target: Ray's overhead over local's under 1 s per job; for this measure Ray gets 2 jobs in flight at a
time like the local pool, so queueing inside Ray is not counted as overhead). Each variant is its own study, so none skips
another's jobs. The dataset is prepared before timing.

    .venv/bin/python benchmarks/sweep_scaling.py [--jobs 8] [--model demo-2025-a] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _server import running_server  # benchmarks/_server.py (the script's folder is on sys.path)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    """Run the three variants and print times, speedup and overhead."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--model", default="demo-2025-a")
    ap.add_argument("--dataset", default="synthetic-gray-suffix")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmseg-sweep-bench-"))
    with running_server(work) as uri:
        os.environ.update(MLFLOW_TRACKING_URI=uri, LLMSEG_HOME=str(work / "home"))
        from llmseg_mlflow.catalog.datasets import get_dataset
        from llmseg_mlflow.catalog.prepare import ensure_prepared
        from llmseg_mlflow.sweep.local import LocalExecutor
        from llmseg_mlflow.sweep.run import SweepOptions, run_sweep
        from llmseg_mlflow.sweep.study import load_study

        ensure_prepared(get_dataset(args.dataset), work / "home" / "data")

        def sweep(name: str, executor) -> tuple[float, list[float]]:
            path = work / f"{name}.yaml"
            path.write_text(
                f"name: {name}\nmodels: [{args.model}]\ndatasets: [{args.dataset}]\n"
                f"repeats: {args.jobs}\noverrides: {{epochs: 1, max_batches: 2, max_fix_rounds: 2}}\n"
            )
            start = time.monotonic()
            summary = run_sweep(
                load_study(path), SweepOptions(log_dir=work / "logs" / name), out=lambda _: None, executor=executor
            )
            wall = time.monotonic() - start
            bad = [r for r in summary.reports if r.state != "done"]
            if bad:
                raise SystemExit(f"{name}: {len(bad)} jobs did not finish: {bad[0].reason}")
            return wall, [r.observed_s - r.inner_s for r in summary.reports]

        results = {}
        for name, make in (
            ("local-1", lambda: LocalExecutor(1, gpus=[])),
            ("local-2", lambda: LocalExecutor(2, gpus=[])),
        ):
            results[name] = sweep(f"bench-{name}", make())
            print(f"{name}: {args.jobs} pipelines in {results[name][0]:.1f} s", flush=True)
        if not args.no_ray:
            import ray

            from llmseg_mlflow.sweep.ray_executor import RayExecutor

            start = time.monotonic()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            ray_init = time.monotonic() - start

            class SlotRay(RayExecutor):
                """Submit as the local executor does (2 in flight), so observed minus in-job time is overhead, not queueing."""

                def capacity(self) -> int:
                    return 2 - self.running()

            results["ray-2"] = sweep("bench-ray-2", SlotRay())
            ray.shutdown()
            print(f"ray-2: {args.jobs} pipelines in {results['ray-2'][0]:.1f} s (+ {ray_init:.1f} s ray.init, once)")

        print(f"\ncores: {os.cpu_count()}; load average now: {os.getloadavg()[0]:.1f}")
        speedup = results["local-1"][0] / results["local-2"][0]
        print(f"speedup 2 workers vs 1: {speedup:.2f}x (target >= 1.6x)")
        for name, (_, overhead) in results.items():
            print(
                f"executor overhead per job, {name}: median {statistics.median(overhead):.2f} s, "
                f"mean {statistics.mean(overhead):.2f} s (driver-observed minus in-job time)"
            )
        if "ray-2" in results:
            extra = statistics.mean(results["ray-2"][1]) - statistics.mean(results["local-2"][1])
            print(
                f"ray overhead per job over local (2 workers): {extra:+.2f} s (target < 1 s); "
                f"wall ratio ray/local-2: {results['ray-2'][0] / results['local-2'][0]:.2f}"
            )


if __name__ == "__main__":
    main()
