"""Replay fidelity: how many LLM-written pipelines run unattended through `replay:DIR` (issue 15 item 8).

Each folder of `benchmarks/pipelines/` holds the four files an LLM wrote for a dataset in a given
layout (hard-coded Windows paths, argparse, config dicts, `_m.jpg` or `_seg.png` masks, NIfTI
volumes, ...) and a `layout.json` saying which layout. For each one this script
1. builds a small source dataset in exactly that layout (a bright disc on a noisy background;
   JPEG masks really JPEG-compressed, NIfTI volumes written with nibabel; 100 pairs by default,
   so the 10 held-out images are enough for a pipeline's own 80/10/10 split when the evaluation
   runs its Dataset on them: with 2-3 held-out images it falls back to generic preprocessing),
2. runs `llmseg datasets add` on it (layout detected, catalog entry written, data prepared),
3. runs `llmseg generate --model replay:<folder> --dataset <key> --epochs 1 --max-batches 2
   --max-fix-rounds 0 --no-preflight` (no second reply: a failure means the platform could not run
   the code as written, with only the harness's overrides; the preflight would run the same
   1-epoch, 2-batch budget twice, `--preflight` keeps it),
and records the final status, whether it trained, whether the held-out Dice was measured (and with
the pipeline's own or the generic preprocessing), the first error, and the lines the harness
changed in the code (from the attempt folder). All state (LLMSEG_HOME, the tracking server's
store, pipeline folders) lives in a temp folder that is kept and printed. Last line:
`ran unattended: K/N, evaluated: E/N`.

    .venv/bin/python benchmarks/replay_fidelity.py --out /tmp/fidelity.json [--only NAME]
    # against another checkout of the package (e.g. a git worktree of an older commit):
    .venv/bin/python benchmarks/replay_fidelity.py --code /tmp/llmseg-before --out /tmp/fidelity_before.json
    # control: each pipeline run bare (no harness) on its own source layout, paths replaced textually
    .venv/bin/python benchmarks/replay_fidelity.py --bare --out /tmp/fidelity_bare.json
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _server import running_server  # benchmarks/_server.py (the script's folder is on sys.path)
from PIL import Image
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PIPELINES = HERE / "pipelines"
FILES = ("dataset.py", "model.py", "train.py", "main.py")


# ---- source datasets --------------------------------------------------------------------------


def _sample(rng: np.random.Generator, size: int, rgb: bool) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8, HxW or HxWx3) with a bright disc, and its boolean foreground."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    r = rng.uniform(0.12, 0.25) * size
    fg = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    base = rng.normal(50, 12, (size, size)) + 120 * fg
    if not rgb:
        return np.clip(base, 0, 255).astype(np.uint8), fg
    tint = np.array([1.0, 0.75, 0.6]) + rng.uniform(-0.1, 0.1, 3)
    return np.clip(base[..., None] * tint, 0, 255).astype(np.uint8), fg


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower().lstrip(".")
    img = Image.fromarray(arr)
    if ext in ("jpg", "jpeg"):
        img.save(path, format="JPEG", quality=90)  # masks too: really lossy, values near 0/255 but not only
    elif ext in ("tif", "tiff"):
        img.save(path, format="TIFF")
    else:
        img.save(path)


def build_source(layout: dict, dest: Path, seed: int = 0) -> Path:
    """A source folder in the layout the pipeline's code expects (see benchmarks/pipelines/README.md)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    if layout["layout"] == "nifti":
        return _build_nifti(layout, dest, rng)
    n, size = layout.get("n", 24), layout.get("size", 96)
    rgb = layout["colour"] == "rgb"
    bg, fg_value = layout["mask_values"]
    names = layout.get("names", "{i}")
    same = layout["layout"] == "same-folder"
    image_dir = dest if same else dest / layout["image_dir"]
    mask_dir = dest if same else dest / layout["mask_dir"]
    for i in range(n):
        stem = names.format(i=i)
        image, fg = _sample(rng, size, rgb)
        mask = np.where(fg, fg_value, bg).astype(np.uint8)
        _save(image, image_dir / f"{stem}.{layout['image_ext']}")
        _save(mask, mask_dir / f"{stem}{layout.get('mask_suffix', '')}.{layout['mask_ext']}")
    for extra in layout.get("extra_files", []):  # e.g. BAGLS's .meta files beside the images
        (dest / extra.format(i=0)).write_text("meta\n")
    return dest


def _build_nifti(layout: dict, dest: Path, rng: np.random.Generator) -> Path:
    """Volumes (H x W x slices) in image_dir/ and label volumes in mask_dir/, foreground on some slices."""
    import nibabel as nib

    n_vol, size, depth = layout.get("volumes", 8), layout.get("size", 64), layout.get("slices", 8)
    fg_label = layout.get("foreground_value", layout["mask_values"][1])
    other = layout.get("other_labels", [])
    affine = np.diag([0.8, 0.8, 4.0, 1.0])
    for v in range(n_vol):
        img = np.zeros((size, size, depth), np.float32)
        lab = np.zeros((size, size, depth), np.uint8)
        lo = rng.integers(1, depth - 4)
        for k in range(depth):
            image, fg = _sample(rng, size, False)
            img[..., k] = image.astype(np.float32) * 8  # MR-like intensities, not 0-255
            for j, value in enumerate(other):  # a ring of another label (e.g. uterine wall) on every slice
                yy, xx = np.mgrid[:size, :size]
                ring = np.abs(np.hypot(yy - size / 2, xx - size / 2) - size * (0.42 - 0.03 * j)) < 2
                lab[..., k][ring] = value
            if lo <= k < lo + 4:
                lab[..., k][fg] = fg_label
        stem = layout.get("names", "case_{i:03d}").format(i=v)
        for folder, arr in ((layout["image_dir"], img), (layout["mask_dir"], lab)):
            out = dest / folder / f"{stem}{layout.get('mask_suffix', '') if arr is lab else ''}.nii.gz"
            out.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(arr, affine), str(out))
    return dest


# ---- running the CLI --------------------------------------------------------------------------


def _cli(python: str, args: list[str], env: dict[str, str], timeout: float, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "llmseg_mlflow.cli", *args]
    try:
        return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, -9, exc.stdout or "", (exc.stderr or "") + "\n[benchmark] timed out")


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _one_line(text: str, limit: int = 220) -> str:
    return re.sub(r"\s+", " ", text or "").strip()[:limit]


def _last_error_line(stderr: str) -> str:
    lines = [ln for ln in (stderr or "").strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:") or re.match(r"^\w+(\.\w+)*(Error|Exception)\b", ln)]
    return _one_line((errors or lines or [""])[-1])


def _where(traceback: str) -> str:
    """The last frame of the generated code in a traceback: 'dataset.py:23 in __init__'."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', traceback)
    mine = [
        (Path(f).name, n, fn)
        for f, n, fn in frames
        if Path(f).name in FILES and "site-packages" not in f and "/lib/python" not in f
    ]
    return f"{mine[-1][0]}:{mine[-1][1]} in {mine[-1][2]}" if mine else ""


def _overrides(original: Path, attempt: Path) -> list[str]:
    """What the harness changed in the code it ran: 'main.py:12: old -> new', one per changed line."""
    out = []
    for name in FILES:
        a, b = original / name, attempt / name
        if not (a.is_file() and b.is_file()):
            continue
        old, new = a.read_text().splitlines(), b.read_text().splitlines()
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
            if tag == "equal":
                continue
            for k in range(max(i2 - i1, j2 - j1)):
                before = old[i1 + k].strip() if i1 + k < i2 else ""
                after = new[j1 + k].strip() if j1 + k < j2 else ""
                out.append(f"{name}:{i1 + k + 1}: {before} -> {after}")
    return out


def _inspect(run_id: str, work_root: Path, pipeline: Path, tracking_uri: str) -> dict:
    """Training/evaluation/debug children of a pipeline root, and what the harness changed in the code."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    root = client.get_run(run_id)
    children = client.search_runs([root.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=200)
    kinds = [c.data.tags.get("kind") for c in children]
    info: dict = {"trained": "training" in kinds, "evaluation_error": root.data.tags.get("evaluation_error")}
    evals = [c for c in children if c.data.tags.get("kind") == "evaluation"]
    if evals:
        info["eval_preprocessing"] = evals[-1].data.tags.get("eval_preprocessing")
        info["compliance_score"] = evals[-1].data.metrics.get("compliance_score")
    trainings = [c for c in children if c.data.tags.get("kind") == "training"]
    if trainings and trainings[-1].data.tags.get("results_error"):
        info["results_error"] = trainings[-1].data.tags["results_error"]
    debugs = sorted(
        (c for c in children if c.data.tags.get("kind") == "debug"), key=lambda c: int(c.data.tags.get("iteration", 0))
    )
    if debugs:
        first = debugs[0]
        info["error_type"] = first.data.tags.get("error_type")
        info["error_phase"] = first.data.tags.get("phase")
        info["error_message"] = _one_line(first.data.params.get("error_message", ""))
    attempts = sorted((work_root / run_id / "attempts").glob("01-*")) if (work_root / run_id).is_dir() else []
    folders = [a for a in attempts if a.is_dir() and not a.name.endswith(".logs")]
    if folders:
        info["overrides"] = _overrides(pipeline, folders[0])
        if debugs:
            logs = folders[0].with_name(folders[0].name + ".logs")
            stderr = "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("*stderr*")))
            info["error_where"] = _where(stderr)
    return info


def _layout(folder: Path, images: int | None) -> dict:
    """layout.json, with the number of source pairs (NIfTI: volumes of 4 foreground slices) overridden."""
    layout = json.loads((folder / "layout.json").read_text())
    if images:
        layout.update({"volumes": max(4, images // 4)} if layout["layout"] == "nifti" else {"n": images})
    return layout


def run_pipeline(
    folder: Path,
    work: Path,
    python: str,
    env: dict[str, str],
    tracking_uri: str,
    timeout_s: float,
    preflight: bool = False,
    images: int | None = None,
) -> dict:
    """Source, `datasets add`, `generate`; the record of one pipeline."""
    layout = _layout(folder, images)
    key = "fid-" + re.sub(r"[^a-z0-9-]", "-", folder.name.lower())
    rec: dict = {"pipeline": folder.name, "dataset": key, "layout": layout}
    source = build_source(layout, work / "sources" / folder.name)
    start = time.monotonic()
    add = ["datasets", "add", key, "--source", str(source), "--modality", "synthetic", "--force"]
    if layout.get("foreground_value") is not None:
        add += ["--foreground-value", str(layout["foreground_value"])]
    proc = _cli(python, add, env, 600, work)
    rec["add_s"] = round(time.monotonic() - start, 1)
    rec["add_ok"] = proc.returncode == 0
    rec["detected"] = [ln.removeprefix("detected: ") for ln in proc.stdout.splitlines() if ln.startswith("detected: ")]
    if not rec["add_ok"]:
        rec.update(
            status="add_failed",
            ran=False,
            trained=False,
            evaluated=False,
            error_type="DatasetsAddFailed",
            error_message=_last_error_line(proc.stderr),
        )
        return rec
    start = time.monotonic()
    gen = [
        "generate",
        "--model",
        f"replay:{folder}",
        "--dataset",
        key,
        "--epochs",
        "1",
        "--max-batches",
        "2",
        "--max-fix-rounds",
        "0",
        "--timeout-s",
        str(timeout_s),
        "--study",
        "fidelity",
        "--work-root",
        str(work / "pipelines"),
    ] + ([] if preflight else ["--no-preflight"])
    proc = _cli(python, gen, env, timeout_s * 3, work)
    rec["generate_s"] = round(time.monotonic() - start, 1)
    rec["exit_code"] = proc.returncode
    result = _last_json(proc.stdout)
    if result is None:
        rec.update(
            status="no_result",
            ran=False,
            trained=False,
            evaluated=False,
            error_type="NoJSONLine",
            error_message=_last_error_line(proc.stderr),
        )
        return rec
    rec.update(result)
    rec["ran"] = result.get("status") == "succeeded"
    rec["evaluated"] = result.get("heldout_dice_mean") is not None
    if result.get("error"):
        rec.update(error_type="HarnessError", error_message=_one_line(result["error"]))
    if result.get("run_id"):
        try:
            rec.update(_inspect(result["run_id"], work / "pipelines", folder, tracking_uri))
        except Exception as exc:  # noqa: BLE001 - the status above is the result; this is detail
            rec["inspect_error"] = f"{type(exc).__name__}: {exc}"
    rec.setdefault("trained", False)
    return rec


# ---- bare control -----------------------------------------------------------------------------


def run_bare(
    folder: Path, work: Path, python: str, site_dir: Path, timeout_s: float, images: int | None = None
) -> dict:
    """The code run as its author would, on its own source layout: layout.json's `bare` replacements
    (hard-coded paths -> the source folder, the epoch count -> 1) applied textually; no harness."""
    layout = _layout(folder, images)
    source = build_source(layout, work / "sources" / folder.name)
    run_dir = work / "bare" / folder.name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "out").mkdir(parents=True)
    for name in FILES:
        text = (folder / name).read_text()
        for old, new in layout.get("bare", {}).items():
            text = text.replace(old, new.replace("{src}", str(source)).replace("{out}", str(run_dir / "out")))
        (run_dir / name).write_text(text)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(site_dir), "LLMSEG_MAX_BATCHES": "2"}
    env.pop("LLMSEG_HOME", None)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [python, "main.py"], cwd=run_dir, env=env, capture_output=True, text=True, timeout=timeout_s
        )
        code, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, stderr = -9, f"{exc.stderr or ''}\nTimeout"
    rec = {"pipeline": folder.name, "bare_ok": code == 0, "bare_s": round(time.monotonic() - start, 1)}
    if code != 0:
        rec["bare_error"] = _last_error_line(stderr)
        rec["bare_where"] = _where(stderr)
    produced = sorted(p.name for p in (run_dir / "out").rglob("*") if p.is_file())
    rec["bare_outputs"] = produced
    return rec


# ---- main -------------------------------------------------------------------------------------


def _code_origin(python: str, env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run(
        [python, "-c", "import llmseg_mlflow; print(llmseg_mlflow.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _git_head(path: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return (proc.stdout.strip() + ("+dirty" if dirty else "")) if proc.returncode == 0 else None


def _table(records: list[dict], bare: bool) -> str:
    rows = []
    for r in records:
        if bare:
            rows.append(
                (
                    r["pipeline"],
                    "ok" if r["bare_ok"] else "FAILED",
                    f"{r['bare_s']:.0f}",
                    "" if r["bare_ok"] else f"{r.get('bare_where', '')} {r.get('bare_error', '')}".strip(),
                )
            )
            continue
        dice = r.get("heldout_dice_mean")
        first = ""
        if r.get("error_type"):
            where = f" @ {r['error_where']}" if r.get("error_where") else ""
            first = f"{r['error_type']}{where}: {r.get('error_message', '')}"
        elif r.get("evaluation_error"):
            first = f"evaluation: {r['evaluation_error']}"
        elif r.get("results_error"):
            first = f"results: {r['results_error']}"
        rows.append(
            (
                r["pipeline"],
                r.get("status", "?"),
                "yes" if r.get("trained") else "no",
                f"{dice:.3f}" if dice is not None else "-",
                r.get("eval_preprocessing") or "-",
                first[:170],
            )
        )
    head = (
        ("pipeline", "bare run", "s", "error")
        if bare
        else ("pipeline", "status", "trained", "dice", "eval prep", "first error")
    )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    widths[-1] = 0
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(tuple("-" * max(w, 5) for w in widths)), *map(fmt, rows)])


def main() -> None:
    """Run every pipeline folder (or --only ones) and print the table and the count."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipelines", type=Path, default=PIPELINES, help="folder of pipeline folders")
    ap.add_argument("--only", action="append", default=[], help="run only this pipeline (repeatable)")
    ap.add_argument("--out", type=Path, help="write the records as JSON here")
    ap.add_argument(
        "--code", type=Path, help="a checkout whose llmseg_mlflow is used (PYTHONPATH); default: the installed one"
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter for the CLI (and so for the sandboxed code)")
    ap.add_argument("--work", type=Path, help="state folder (default: a new temp folder, kept)")
    ap.add_argument("--timeout-s", type=float, default=600, help="generate --timeout-s")
    ap.add_argument("--tracking-uri", help="use this tracking server instead of starting one")
    ap.add_argument(
        "--images", type=int, help="source pairs per pipeline (default: layout.json's n, 100; NIfTI: N/4 volumes)"
    )
    ap.add_argument(
        "--preflight",
        action="store_true",
        help="keep generate's preflight (with --epochs 1 --max-batches 2 it is the same run twice)",
    )
    ap.add_argument("--bare", action="store_true", help="control: run each pipeline bare on its own layout instead")
    args = ap.parse_args()

    folders = sorted(p for p in args.pipelines.iterdir() if (p / "layout.json").is_file())
    if args.only:
        unknown = set(args.only) - {p.name for p in folders}
        if unknown:
            sys.exit(f"unknown pipeline(s): {', '.join(sorted(unknown))}; have: {', '.join(p.name for p in folders)}")
        folders = [p for p in folders if p.name in args.only]
    work = (args.work or Path(tempfile.mkdtemp(prefix="llmseg-fidelity-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    code_root = (args.code or REPO).resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMSEG_", "MLFLOW_"))}
    env.update(
        LLMSEG_HOME=str(work / "home"),
        LLMSEG_DATASETS_FILE=str(work / "home" / "datasets.yaml"),
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
    )
    if args.code:
        env["PYTHONPATH"] = str(code_root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    origin, git = _code_origin(args.python, env, work), _git_head(code_root)
    print(f"llmseg_mlflow from {origin} (git {git}); state in {work}", flush=True)
    if args.code and not Path(origin).resolve().is_relative_to(code_root):
        sys.exit(f"--code {code_root} is not what imports: {origin}")

    started, records = time.time(), []
    if args.bare:
        site_dir = Path(origin).parent / "pipeline" / "sandbox_site"
        for folder in tqdm(folders, desc="bare", unit="pipeline"):
            rec = run_bare(folder, work, args.python, site_dir, args.timeout_s, args.images)
            tqdm.write(f"{folder.name}: {'ok' if rec['bare_ok'] else 'FAILED ' + rec.get('bare_error', '')}")
            records.append(rec)
    else:
        with contextlib.ExitStack() as stack:
            uri = args.tracking_uri or stack.enter_context(running_server(work))
            env["MLFLOW_TRACKING_URI"] = uri
            for folder in tqdm(folders, desc="pipelines", unit="pipeline"):
                rec = run_pipeline(folder, work, args.python, env, uri, args.timeout_s, args.preflight, args.images)
                seconds = rec.get("add_s", 0) + rec.get("generate_s", 0)
                tqdm.write(f"{folder.name}: {rec.get('status')} ({seconds:.0f} s)")
                records.append(rec)
    duration = time.time() - started

    print()
    print(_table(records, args.bare))
    n = len(records)
    if args.bare:
        summary = {"bare_ok": sum(r["bare_ok"] for r in records)}
        line = f"ran bare on their own layout: {summary['bare_ok']}/{n}"
    else:
        summary = {
            "ran_unattended": sum(bool(r.get("ran")) for r in records),
            "trained": sum(bool(r.get("trained")) for r in records),
            "evaluated": sum(bool(r.get("evaluated")) for r in records),
        }
        line = f"ran unattended: {summary['ran_unattended']}/{n}, evaluated: {summary['evaluated']}/{n}"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "code": origin,
                    "git": git,
                    "work": str(work),
                    "python": args.python,
                    "mode": "bare" if args.bare else "replay",
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                    "duration_s": round(duration, 1),
                    "total": n,
                    **summary,
                    "records": records,
                },
                indent=2,
                default=str,
            )
        )
    print(f"({duration / 60:.1f} min; state kept in {work})")
    print(line)


if __name__ == "__main__":
    main()
