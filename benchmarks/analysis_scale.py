"""`analyze` at study scale: cold (empty cache), warm (nothing new) and naive (the client's search_runs, one
history call per run and curve, one per_image.csv download per run; same tables and figures), on a local mlflow server holding a synthetic study of
19 models x 6 datasets x 10 repeats = 1,140 pipelines with their child runs, 50-epoch curves and
per-image held-out scores. Prints the times and the ratios, measured in this one run.

    .venv/bin/python benchmarks/analysis_scale.py                 # build the study (minutes), then time
    .venv/bin/python benchmarks/analysis_scale.py --keep /tmp/s   # keep the server's store to time again later
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _server import running_server  # benchmarks/_server.py (the script's folder is on sys.path)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STUDY = "scale"
DATASETS = ("bagls", "bolus", "brain-tumor", "skin-lesion", "uterine-myoma", "retina")


def build_study(client, models: int, repeats: int, n_heldout: int) -> int:
    """Write the synthetic study unless the store already holds it; returns the number of pipeline roots."""
    from llmseg_mlflow.analysis.fetch import search_roots
    from llmseg_mlflow.analysis.synthetic_study import SynthStudySpec, paper_models, write_synthetic_study

    have = len(search_roots(client, STUDY))
    if have:
        print(f"study {STUDY!r} already on the server ({have} roots): not written again")
        return have
    spec = SynthStudySpec(
        study=STUDY,
        models=paper_models()[:models],
        datasets=DATASETS,
        repeats=repeats,
        epochs=50,
        n_heldout=n_heldout,
        budget_epochs=None,
        failures=(("copilot", "bagls", 3),),
        threads=8,
    )
    start = time.monotonic()
    written = write_synthetic_study(client, spec, progress=print)
    print(f"wrote {len(written)} pipelines with their child runs in {time.monotonic() - start:.0f} s")
    return len(written)


def naive_fetch():
    """What a straightforward analysis does: one history call per run and curve, one per_image.csv per run
    (the same stages as the real fetch, so only the way of getting the data differs)."""
    import numpy as np
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from llmseg_mlflow.analysis.series import SeriesFetch
    from llmseg_mlflow.analysis.table import IMAGE_DICE

    class NaiveFetch(SeriesFetch):
        def fetch(self, wanted, progress):
            client = MlflowClient()
            by_id = {r.run_id: r for r in self.todo}
            out = {}
            with tempfile.TemporaryDirectory() as tmp:
                for key, (run_ids, _) in wanted.items():
                    got = out.setdefault(key, {})
                    for run_id in run_ids:
                        if key == IMAGE_DICE:
                            ev = by_id[run_id].tags["evaluation_run_id"]
                            table = pd.read_csv(client.download_artifacts(ev, "heldout/per_image.csv", tmp))
                            got[run_id] = (table["index"].to_numpy(), table["dice"].to_numpy())
                        else:
                            hist = client.get_metric_history(run_id, key)
                            got[run_id] = (np.array([m.step for m in hist]), np.array([m.value for m in hist]))
                    progress(len(run_ids))
            return out

    return NaiveFetch


def naive_roots(client, study, folder, refresh=False):
    """The client's search_runs (protobuf entities), every time."""
    from mlflow.entities import ViewType

    from llmseg_mlflow.analysis.fetch import Root, roots_filter

    exp_ids = [e.experiment_id for e in client.search_experiments()]
    runs, token = [], None
    while True:
        page = client.search_runs(exp_ids, roots_filter(study), ViewType.ACTIVE_ONLY, 1000, page_token=token)
        runs += [Root.from_run(r) for r in page]
        token = page.token
        if not token:
            return runs, f"naive: listed {len(runs)} roots with MlflowClient.search_runs"


def time_analyze(output: Path, cache: Path, naive: bool = False) -> tuple[float, float]:
    """Seconds for one full run_analyze (tables, figures, report, the kind=analysis run and its artifacts),
    and the part spent waiting for data (listing the roots, and each series stage beyond the work done
    while it arrived; from the analysis run's metrics)."""
    import llmseg_mlflow.analysis.run as run_mod
    from llmseg_mlflow.analysis import AnalyzeConfig, run_analyze

    original = run_mod.SeriesFetch, run_mod.list_roots
    if naive:
        run_mod.SeriesFetch, run_mod.list_roots = naive_fetch(), naive_roots
    try:
        start = time.monotonic()
        run_analyze(AnalyzeConfig(study=STUDY, output=output, cache_dir=cache), progress=lambda m: print("  " + m))
        total = time.monotonic() - start
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        exp = client.get_experiment_by_name(STUDY).experiment_id
        run = client.search_runs(
            [exp], "tags.kind = 'analysis'", order_by=["attributes.start_time DESC"], max_results=1
        )[0]
        m = run.data.metrics
        return total, sum(
            v
            for k, v in m.items()
            if k in ("time_list_s", "time_wait_curves_s", "time_wait_dice_s", "time_wait_rest_s")
        )
    finally:
        run_mod.SeriesFetch, run_mod.list_roots = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="Keep the server's store here (reused when it holds the study).")
    ap.add_argument("--models", type=int, default=19)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument(
        "--pipelines", type=int, help="About this many pipelines: sets --repeats (11460 is ten times the paper)."
    )
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--server-workers", type=int, default=1)
    ap.add_argument("--heldout", type=int, default=50, help="Held-out images per dataset.")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--build-only", action="store_true", help="Write the study into --keep and stop (time it later).")
    args = ap.parse_args()
    if args.pipelines:
        args.repeats = max(1, round(args.pipelines / (args.models * len(DATASETS))))
    tmp = tempfile.TemporaryDirectory()
    root = (args.keep or Path(tmp.name)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with running_server(root, args.store, args.server_workers) as uri:
        measure(args, root, uri)
    tmp.cleanup()


def measure(args: argparse.Namespace, root: Path, uri: str) -> None:
    """Build the study unless it is there, then time cold, warm and naive analyze and print the ratios."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    os.environ["LLMSEG_HOME"] = str(root / "home")  # no prepared datasets: grids show predictions only
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    n = build_study(MlflowClient(), args.models, args.repeats, args.heldout)
    if args.build_only:
        return
    work = Path(tempfile.mkdtemp(dir=root))
    print(f"\nanalyze, cold (empty cache), {n} pipelines:")
    cold, cold_data = time_analyze(work / "cold", work / "cache")
    print("\nanalyze, warm (nothing new since the last analyze):")
    warm, warm_data = time_analyze(work / "warm", work / "cache")
    naive = naive_data = None
    if not args.skip_naive:
        print("\nanalyze, naive (per-run history and artifact calls, empty cache):")
        naive, naive_data = time_analyze(work / "naive", work / "naive-cache", naive=True)
    print(f"\n{n} pipelines on {uri} ({args.store} store, {args.server_workers} server workers)")
    print(f"cold  {cold:7.1f} s   (target < 30 s)   waiting for data {cold_data:6.1f} s")
    print(
        f"warm  {warm:7.1f} s   (target < 5 s)    waiting for data {warm_data:6.1f} s   cold/warm = {cold / warm:.1f}x"
    )
    if naive is not None:
        print(f"naive {naive:7.1f} s                     waiting for data {naive_data:6.1f} s")
        print(
            f"naive/cold = {naive / cold:.1f}x end to end (target >= 10x), {naive_data / cold_data:.1f}x waiting for "
            f"data; naive/warm = {naive / warm:.1f}x"
        )


if __name__ == "__main__":
    main()
