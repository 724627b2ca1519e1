"""Harness overhead: one fixed pipeline run bare (`python main.py` in a copy) vs through `generate`.

Same code, data and epochs; repeats interleaved so machine noise hits all variants alike.
Prints the median seconds of each variant and the ratios to bare (target: <= 1.05 without the
preflight, which is a deliberate extra 1-epoch/2-batch run). No evaluation is involved.

    .venv/bin/python benchmarks/harness_overhead.py [--repeats 3] [--epochs 6] [--images 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def main() -> None:
    """Run the interleaved comparison and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo-2025-a")
    ap.add_argument("--dataset", default="synthetic-gray-suffix")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--images", type=int, default=400)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmseg-bench-"))
    yaml = work / "datasets.yaml"
    yaml.write_text(f"datasets:\n  {args.dataset}:\n    synthetic: {{n: {args.images}, size: 64, seed: 0}}\n")
    os.environ.update(
        LLMSEG_DATASETS_FILE=str(yaml),
        LLMSEG_HOME=str(work / "home"),
        MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
    )

    from mlflow.tracking import MlflowClient

    from llmseg_mlflow.catalog.datasets import get_dataset
    from llmseg_mlflow.catalog.models import get_model
    from llmseg_mlflow.catalog.prepare import ensure_prepared
    from llmseg_mlflow.generate import GenerateConfig, run_generate
    from llmseg_mlflow.llm.base import Message, make_provider
    from llmseg_mlflow.pipeline import knobs
    from llmseg_mlflow.pipeline.execute import knob_values
    from llmseg_mlflow.pipeline.extract import extract_files
    from llmseg_mlflow.tracking.runs import ensure_experiment

    # Artifacts under the temp folder too (a sqlite store would otherwise put them in ./mlruns).
    ensure_experiment(MlflowClient(), "bench", artifact_location=(work / "artifacts").as_uri())
    spec, model = get_dataset(args.dataset), get_model(args.model)
    data = ensure_prepared(spec, work / "home" / "data")
    reply = make_provider(model, dataset=spec.key, repeat=1).complete([Message("user", "prompt")])
    files = extract_files(reply.text)

    def bare(i: int) -> float:
        folder = work / f"bare-{i}"
        patched, _ = knobs.apply_overrides(files, knob_values(data, data.pool, folder / "outputs", args.epochs))
        folder.mkdir()
        for name, text in patched.items():
            (folder / name).write_text(text)
        (folder / "outputs").mkdir()
        start = time.monotonic()
        subprocess.run(
            [sys.executable, "main.py"],
            cwd=folder,
            check=True,
            capture_output=True,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
        return time.monotonic() - start

    def harness(preflight: bool) -> float:
        cfg = GenerateConfig(
            model=args.model,
            dataset=args.dataset,
            epochs=args.epochs,
            study="bench",
            preflight=preflight,
            work_root=work / "pipelines",
            evaluate=False,
        )
        start = time.monotonic()
        result = run_generate(cfg)
        assert result.status == "succeeded", result
        return time.monotonic() - start

    variants = {
        "bare": lambda i: bare(i),
        "harness": lambda i: harness(False),
        "harness+preflight": lambda i: harness(True),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(fn(i))
            print(f"repeat {i + 1}: {name:18} {times[name][-1]:7.2f} s", flush=True)
    base = statistics.median(times["bare"])
    print(f"\n{args.model} on {args.dataset}: {args.images} images, {args.epochs} epochs, {args.repeats} repeats")
    for name, values in times.items():
        med = statistics.median(values)
        paired = statistics.median(v / b for v, b in zip(values, times["bare"]))
        print(
            f"{name:18} median {med:7.2f} s   ratio of medians {med / base:5.3f}   "
            f"median of per-repeat ratios {paired:5.3f}"
        )


if __name__ == "__main__":
    main()
