"""Study chats: what `llmseg import-chat` reads from the published chats of "From Prompts to Pipelines" (issue 21 item 3).

The authors published one `<model> chat.json` per model (plain text copied from the chat web pages, despite
the name) in github.com/ankilab/LLM_based_Segmentation, under `Modells 2024/` and `Modells 2025/`. They are not
ours to redistribute: fetch them into a folder outside the repository. For each `<model> chat.json` this script
1. imports it with `pipeline.chat_import.import_chat` into `OUT/replay/<model-slug>/` (format auto; when that
   fails, each explicit format in turn, and the table says which one worked),
2. counts the assistant replies, the user turns read as a pasted error (`traceback`) or as anything else
   (`other`: a question, an error pasted without its traceback, ...), and whether the four files were recovered,
3. prints one row per model beside the paper's count of errors until the code ran (hard-coded below, written
   to `OUT/recorded_counts.csv` with header `model,errors,source`, model as a replay pipeline's `model` tag, for
   `llmseg analyze --recorded-errors`), and writes the rows to `OUT/import_counts.csv`.

    .venv/bin/python benchmarks/study_chats.py --transcripts /tmp/study_chats/transcripts --out /tmp/study_chats/out
    # then replay one: llmseg generate --model replay:/tmp/study_chats/out/replay/<slug> --dataset <key> ...
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
import time
from pathlib import Path

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.pipeline import chat_import
from llmseg_mlflow.pipeline.chat_import import FORMATS, detect_format, import_chat, split_turns
from llmseg_mlflow.pipeline.extract import CODE_FILES

# Errors until the LLM's code ran, as the paper states them in its text ("From Prompts to Pipelines",
# Sec. 4 Results, error paragraphs under Fig. 2 "Comparison of the number and type of errors across LLMs until
# successful code execution"). Fig. 2 itself is a bar chart whose values the text does not repeat: models
# absent here (GPT-4, GitHub Copilot, Bing Copilot, DeepSeek V3, Qwen 3 without thinking) have no stated count.
RECORDED: dict[str, tuple[str, str]] = {
    "Gemini 1.5 Pro": ("15", "Sec. 4: earlier counterparts of Gemini 2.5 Pro and Llama 4 had 15 and 13 errors"),
    "Llama 3.1 405B": ("13", "Sec. 4: earlier counterparts of Gemini 2.5 Pro and Llama 4 had 15 and 13 errors"),
    "GPT o1 Preview": ("0", "Sec. 4: GPT o1-Preview and Claude 3.5 Sonnet fully executable on first attempt"),
    "Claude 3.5 Sonnet": ("0", "Sec. 4: GPT o1-Preview and Claude 3.5 Sonnet fully executable on first attempt"),
    "GPT-4o": ("1-2", "Sec. 4 run-to-run test: 'Like the initial run, GPT-4o generated one or two' errors"),
    "Grok 3": ("0", "Sec. 4: Grok 3, Gemini 2.5 Pro, Claude 4 Sonnet, GPT o3 ran out-of-the-box"),
    "Gemini 2.5 Pro": ("0", "Sec. 4: Grok 3, Gemini 2.5 Pro, Claude 4 Sonnet, GPT o3 ran out-of-the-box"),
    "Claude 4 Sonnet": ("0", "Sec. 4: Grok 3, Gemini 2.5 Pro, Claude 4 Sonnet, GPT o3 ran out-of-the-box"),
    "GPT o3": ("0", "Sec. 4: Grok 3, Gemini 2.5 Pro, Claude 4 Sonnet, GPT o3 ran out-of-the-box"),
    "Grok 3 mini": ("4", "Sec. 4: maximum of 4 errors in Grok 3 mini, Qwen 3 and Llama 4 Maverick"),
    "Qwen 3 235B": ("4", "Sec. 4: maximum of 4 errors in Grok 3 mini, Qwen 3 and Llama 4 Maverick"),
    "Llama 4 Maverick": ("4", "Sec. 4: maximum of 4 errors in Grok 3 mini, Qwen 3 and Llama 4 Maverick"),
    "DeepSeek R1": ("1-3", "Sec. 4: DeepSeek, o4-mini-high, Mistral Medium 3 had 1-3 (R1: a manual Dice fix)"),
    "GPT o4-mini-high": ("1-3", "Sec. 4: DeepSeek, o4-mini-high, Mistral Medium 3 had 1-3 errors"),
    "Mistral Medium 3": ("1-3", "Sec. 4: DeepSeek, o4-mini-high, Mistral Medium 3 had 1-3 errors"),
}

# Transcript file stem (as published) -> the model's name in the paper.
PAPER_NAME = {
    "Gemini": "Gemini 1.5 Pro",
    "LLAMA": "Llama 3.1 405B",
    "GPT o1 preview": "GPT o1 Preview",
    "Claude": "Claude 3.5 Sonnet",
    "GPT4": "GPT-4",
    "GPT 4o": "GPT-4o",
    "Copilot": "GitHub Copilot",
    "Bing copilot": "Bing Microsoft Copilot",
    "Grok 3 mini reasoning": "Grok 3 mini",
    "Qwen 3_235B": "Qwen 3 235B",
    "Qwen 3_235B_without thinking": "Qwen 3 235B (no thinking)",
    "Llama 4": "Llama 4 Maverick",
}


def slug(name: str) -> str:
    """The replay folder's name for a model: "GPT o4-mini-high" -> "gpt-o4-mini-high"."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")


def study(path: Path, replay_root: Path) -> dict:
    """Import one transcript (auto, then each format) and count what import.json says."""
    stem = path.name.removesuffix(" chat.json")
    model = PAPER_NAME.get(stem, stem)
    folder = replay_root / slug(model)
    row = {
        "model": model,
        "file": path.name,
        "format": "",
        "replies": "",
        "traceback": "",
        "other": "",
        "stopped_at": "",
    }
    row.update({"files": "", "error": "", "paper": RECORDED.get(model, ("not stated", ""))[0]})
    first_error = None
    for fmt in FORMATS:
        try:
            result = _fresh_import(path, folder, fmt)
        except UsageError as exc:
            first_error = first_error or f"{fmt}: {exc}"
            continue
        row.update(_counts(result), format=result.format if fmt == "auto" else f"{fmt} (auto failed)")
        row["error"] = first_error.replace(str(path), path.name) if fmt != "auto" else ""
        return row
    row["error"] = first_error.replace(str(path), path.name)
    try:  # the replies before the one that cannot be placed can still be replayed
        result = _fresh_import(path, folder, "auto", partial=True)
    except UsageError:
        if folder.exists():
            shutil.rmtree(folder)
    else:
        row.update(_counts(result), format=f"{result.format} (partial)")
        return row
    # No folder written: count the turns as the importer splits them (marked *), to compare with the paper anyway.
    turns = split_turns(path.read_text(encoding="utf-8", errors="replace"), detect_format(path.read_text()))
    users = [chat_import._classify_user(t, first=i == 0) for i, t in enumerate(turns) if t.role == "user"]
    kinds = [u["kind"] for u in users if u]
    replies = sum(t.role == "assistant" for t in turns)
    row.update(replies=f"{replies}*", traceback=f"{kinds.count('traceback')}*", other=f"{kinds.count('other')}*")
    return row


def _fresh_import(path: Path, folder: Path, fmt: str, partial: bool = False) -> chat_import.ImportResult:
    if folder.exists():
        shutil.rmtree(folder)
    return import_chat(path, folder, fmt, partial)


def _counts(result: chat_import.ImportResult) -> dict:
    """Replies, pasted errors and other user turns of an import, whether the four files came, where it stopped."""
    kinds = [r["user_turn"]["kind"] for r in result.replies if r["user_turn"]]
    if result.trailing_user_turn:
        kinds.append(result.trailing_user_turn["kind"])
    carried = {name for r in result.replies for name in r["files"]}
    missing = sorted(set(CODE_FILES) - carried)
    return {
        "replies": len(result.replies),
        "traceback": kinds.count("traceback"),
        "other": kinds.count("other"),
        "files": "all 4" if not missing else "missing " + ",".join(missing),
        "stopped_at": (result.stopped_at or {}).get("reply", ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transcripts", type=Path, required=True, help="folder of '<model> chat.json' transcripts")
    ap.add_argument("--out", type=Path, required=True, help="folder for replay/<slug>/ and the CSV files")
    args = ap.parse_args()
    paths = sorted(args.transcripts.glob("* chat.json"))
    if not paths:
        sys.exit(f"no '<model> chat.json' files in {args.transcripts}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = [study(p, args.out / "replay") for p in paths]
    head = f"{'model':<26} {'paper':>10} {'replies':>7} {'traceback':>9} {'other':>5} {'stop':>4}  {'files':<18} import error"
    print(head)
    for r in rows:
        line = f"{r['model']:<26} {r['paper']:>10} {r['replies']!s:>7} {r['traceback']!s:>9} {r['other']!s:>5} "
        line += f"{r['stopped_at']!s:>4}  {r['files']:<18} {r['error'][:150] or '-'}"
        print(line + (f"  [{r['format']}]" if "(" in r["format"] else ""))
    with open(args.out / "import_counts.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(args.out / "recorded_counts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "errors", "source"])
        # keyed as the `model` tag of a `replay:DIR` pipeline (replay: and the folder's name), what analyze matches
        writer.writerows(
            [f"replay:{slug(name)}", errors, f"{name}: {source}"] for name, (errors, source) in RECORDED.items()
        )
    print(f"{len(rows)} transcripts in {time.perf_counter() - start:.1f}s; CSVs and replay folders in {args.out}")


if __name__ == "__main__":
    main()
