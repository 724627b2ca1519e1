"""Study replays: the study's own chats run again, on data laid out as their code expects (issue 21 item 3).

Input: the replay folders `benchmarks/study_chats.py` wrote (`OUT/replay/<model-slug>/`, one per transcript that
imports). For each, this script runs `generate` with `model=replay:<folder>` (the recorded replies answer the
harness's errors in order; `recorded_error` and `replay_divergence` on each debug run say whether the person had
pasted the same error) on a synthetic stand-in for BAGLS, the set the authors' prompt describes:

- grayscale frames of mixed sizes (BAGLS mixes them too; code that stacks unresized images fails on them, as
  GPT-4o's did), masks `N_seg.png` beside the images `N.png` in one folder,
- 1,000 pairs (the paper's ~5,000 would only slow this down): 900 in the pool, so a pipeline's own 10% test
  split holds 90 images, 6 batches of 16, enough for code that shows 5 random test batches,
- code that wants images and masks in two folders gets the same frames as `images/N.png`, `masks/N_seg.png`
  (`FOLDERS`: the prompt allows both layouts; the authors' transcripts show no error of the other one).

Budget: 1 epoch (`--epochs`), at most 5 batches per loader, the 2-batch preflight first (a failure under its cap is
rechecked with 5), no held-out evaluation: the question is which errors the code meets until it runs. The replay
follows the chat to its end: no stuck-loop stop (`stuck_after=0`) and a fix round for every recorded reply.
Writes `OUT/replays.csv` (one row per model: status, errors by type, matched/diverged recorded errors, the
paper's count), `OUT/replays.md` (the same as a table) and prints both. All state (LLMSEG_HOME, tracking store,
pipeline folders) stays under OUT.

    .venv/bin/python benchmarks/study_chats.py --transcripts /tmp/study_chats/transcripts --out /tmp/study_chats/out
    .venv/bin/python benchmarks/study_replays.py --replays /tmp/study_chats/out/replay --out /tmp/study_chats/replays
    # then: llmseg analyze --study study-replays --recorded-errors /tmp/study_chats/out/recorded_counts.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import traceback
from pathlib import Path

from _server import running_server  # benchmarks/_server.py (the script's folder is on sys.path)

from llmseg_mlflow.pipeline.errors import recorded_error, same_error

STUDY = "study-replays"
FRAME_SIZES = [[256, 256], [512, 256], [256, 120]]  # (height, width), in turn
# Chats whose code wants images and masks in two folders (read in each reply): its Dataset lists every .png of
# the image folder as an image (masks beside them would be read as images and `N_seg_seg.png` looked for), or
# its main.py joins "images" and "masks" onto the data folder. None of the authors' pasted errors is such a
# FileNotFoundError: they ran these on two folders.
FOLDERS = {"deepseek-v3", "gemini-2.5-pro", "grok-3", "llama-4-maverick", "mistral-medium-3"}


def _datasets_yaml(n: int) -> str:
    """Two catalog entries: the same synthetic frames in BAGLS's layout and in images/ + masks/ folders."""
    common = f"    colour: grayscale\n    mask_suffix: _seg\n    synthetic: {{n: {n}, seed: 0, sizes: {FRAME_SIZES}}}\n"
    return (
        "datasets:\n"
        "  study-bagls-like:\n    title: Synthetic BAGLS stand-in, N.png and N_seg.png in one folder\n"
        f"    modality: synthetic\n    layout: suffix\n{common}"
        "  study-bagls-like-folders:\n    title: Synthetic BAGLS stand-in, images/N.png and masks/N_seg.png\n"
        f"    modality: synthetic\n    layout: folders\n{common}"
    )


def _recorded(folder: Path) -> dict:
    """What the transcript holds: replies and pasted errors (import.json)."""
    records = json.loads((folder / "import.json").read_text())["replies"]
    turns = [r["user_turn"] for r in records if r["user_turn"]]  # an older Poe page may not show the person's turn
    pasted = [t.get("error", "") for t in turns if t["kind"] == "traceback"]
    return {"replies": len(records), "pasted": pasted}


def _debug_rows(client, root) -> list[dict]:
    """The root's debug runs, oldest first: error, phase, whether the person had pasted the same one."""
    runs = client.search_runs(
        [root.info.experiment_id],
        f"tags.mlflow.parentRunId = '{root.info.run_id}' and tags.kind = 'debug'",
        order_by=["attributes.start_time ASC"],
    )
    return [
        {
            "type": r.data.tags.get("error_type", ""),
            "message": r.data.params.get("error_message", ""),
            "phase": r.data.tags.get("phase", ""),
            "diverged": r.data.tags.get("replay_divergence"),
            "recorded": r.data.params.get("recorded_error", ""),
        }
        for r in runs
    ]


def main() -> int:
    """Replay every imported chat and tabulate the errors beside the transcripts' and the paper's."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replays", type=Path, required=True, help="OUT/replay of benchmarks/study_chats.py")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", help="model slugs (folder names) to run")
    ap.add_argument("--n", type=int, default=1000, help="synthetic pairs (pool + held-out)")
    ap.add_argument("--max-batches", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=1, help="2 reaches code that only runs from the second epoch on")
    ap.add_argument("--tables-only", action="store_true", help="rewrite the tables from OUT/replays.json")
    args = ap.parse_args()
    paper = _paper_counts(args.replays.parent / "recorded_counts.csv")
    if args.tables_only:  # the debug runs read again from the store, with this checkout's comparison
        rows = json.loads((args.out / "replays.json").read_text())
        with running_server(args.out / "server") as uri:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(uri)
            for r in rows:
                roots = client.search_runs(
                    [client.get_experiment_by_name(STUDY).experiment_id],
                    f"tags.model = 'replay:{r['model']}' and tags.kind = 'pipeline'",
                    order_by=["attributes.start_time DESC"],
                    max_results=1,
                )
                if roots:  # a run cut short (killed mid-training) keeps status running and no errors_total
                    r["debug"] = _debug_rows(client, roots[0])
                    r["status"] = roots[0].data.tags.get("status", r["status"])
                    r["errors"] = int(roots[0].data.metrics.get("errors_total", len(r["debug"])))
        _write_tables([{**r, "paper": paper.get(r["model"], "not stated")} for r in rows], args.out)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "datasets.yaml").write_text(_datasets_yaml(args.n))
    os.environ |= {"LLMSEG_HOME": str(args.out / "home"), "LLMSEG_DATASETS_FILE": str(args.out / "datasets.yaml")}
    os.environ.pop("MLFLOW_RUN_ID", None)
    slugs = sorted(p.name for p in args.replays.iterdir() if (p / "import.json").is_file())
    slugs = [s for s in slugs if not args.only or s in args.only]

    import mlflow
    from mlflow.tracking import MlflowClient

    from llmseg_mlflow.generate import GenerateConfig, run_generate

    saved = args.out / "replays.json"  # rows of earlier runs (e.g. with --only) are kept unless run again
    rows = [r for r in json.loads(saved.read_text()) if r["model"] not in slugs] if saved.is_file() else []
    with running_server(args.out / "server") as uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        mlflow.set_tracking_uri(uri)
        client = MlflowClient()
        for slug in slugs:
            folder = args.replays / slug
            dataset = "study-bagls-like-folders" if slug in FOLDERS else "study-bagls-like"
            print(f"== {slug} on {dataset}", flush=True)
            t0 = time.monotonic()
            row = {"model": slug, "dataset": dataset, "epochs": args.epochs, **_recorded(folder)}
            try:
                result = run_generate(
                    GenerateConfig(
                        model=f"replay:{folder}",
                        dataset=dataset,
                        study=STUDY,
                        epochs=args.epochs,
                        max_batches=args.max_batches,
                        evaluate=False,
                        # follow the chat to its last reply: no stuck-loop stop, a fix round for every reply
                        max_fix_rounds=max(row["replies"], 10),
                        stuck_after=0,
                    )
                )
                root = client.get_run(result.run_id)
                row |= {"status": result.status, "errors": result.errors_total, "debug": _debug_rows(client, root)}
                row["preflight_cap_errors"] = int(root.data.metrics.get("preflight_cap_errors", 0))
            except Exception as exc:  # one model's harness failure must not lose the others' rows
                traceback.print_exc()
                row |= {"status": f"harness: {type(exc).__name__}: {exc}"[:200], "errors": None, "debug": []}
            row["seconds"] = round(time.monotonic() - t0)
            row["paper"] = paper.get(slug, "not stated")
            rows.append(row)
            saved.write_text(json.dumps(rows, indent=1))
    _write_tables(rows, args.out)
    return 0


def _paper_counts(path: Path) -> dict[str, str]:
    """The paper's count per replay folder name, from study_chats.py's recorded_counts.csv."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {r["model"].removeprefix("replay:"): r["errors"] for r in csv.DictReader(f)}


def _matched(debug: dict) -> bool | None:
    """Whether the person had pasted this error before the reply that answered it (None: no reply did)."""
    if debug["diverged"] is None:
        return None
    recorded = recorded_error(debug["recorded"]) if debug["recorded"] else None
    return recorded is not None and same_error(recorded, (debug["type"], debug["message"]))


def _write_tables(rows: list[dict], out: Path) -> None:
    """replays.csv and replays.md: one row per model."""
    rows = sorted(rows, key=lambda r: r["model"])
    fields = [
        "model",
        "paper",
        "pasted",
        "errors",
        "types",
        "matched",
        "diverged",
        "cap_only",
        "status",
        "epochs",
        "seconds",
    ]
    table = []
    for r in rows:
        debug = r["debug"]
        table.append(
            {
                "model": r["model"],
                "paper": r["paper"],
                "pasted": len(r["pasted"]),
                "errors": r["errors"],
                "types": ", ".join(d["type"] for d in debug),
                "matched": sum(_matched(d) is True for d in debug),
                "diverged": sum(_matched(d) is False for d in debug),
                "cap_only": r.get("preflight_cap_errors", 0),  # preflight failures the recheck cleared
                "status": r["status"],
                "epochs": r.get("epochs", 1),
                "seconds": r["seconds"],
            }
        )
    with open(out / "replays.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table)
    lines = ["| " + " | ".join(fields) + " |", "|" + " --- |" * len(fields)]
    lines += ["| " + " | ".join(str(t[k]) for k in fields) + " |" for t in table]
    (out / "replays.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
