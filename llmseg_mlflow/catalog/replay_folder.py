"""What a replay folder holds (recorded assistant replies, or the generated .py files), read in order.

The catalog checks `replay:DIR` models with it; llm/replay.py answers from the same reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FOLDER_LAYOUT = (
    "a replay folder must hold the assistant's replies in order as 01.md, 02.md, ... (Markdown with fenced "
    "code, optionally 01.reasoning.md with the reasoning trace of reply 01), or simply the generated .py files "
    "(dataset.py, model.py, train.py, main.py); a subfolder named after a dataset key holds the replies for "
    "that dataset"
)
_REPLY = re.compile(r"^(\d+)\.md$")
_FILE_ORDER = ("dataset.py", "model.py", "train.py", "main.py")


@dataclass(frozen=True)
class RecordedReply:
    """One recorded assistant turn and the file it came from."""

    text: str
    reasoning: str | None
    source: Path


def recorded_replies(folder: Path) -> list[RecordedReply]:
    """The replies in folder, in order: NN.md files by number, else one reply synthesised from the .py files."""
    numbered = sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_file() and (m := _REPLY.match(p.name)))
    if numbered:
        replies = []
        for _number, path in numbered:
            trace = path.with_name(f"{path.stem}.reasoning.md")
            reasoning = trace.read_text(encoding="utf-8") if trace.is_file() else None
            replies.append(RecordedReply(path.read_text(encoding="utf-8"), reasoning, path))
        return replies
    sources = [p for p in folder.iterdir() if p.is_file() and p.suffix == ".py"]
    if not sources:
        return []
    return [RecordedReply(_as_markdown(sources), None, folder)]


def has_replies(folder: Path) -> bool:
    """Whether folder, or one of its dataset subfolders, holds recorded replies."""
    if recorded_replies(folder):
        return True
    return any(sub.is_dir() and recorded_replies(sub) for sub in folder.iterdir())


def _as_markdown(sources: list[Path]) -> str:
    """One reply as an LLM would write it: a heading and a fenced block per file, pipeline files first."""
    rank = {name: i for i, name in enumerate(_FILE_ORDER)}
    parts = ["Here is the implementation, one file per section.\n"]
    for path in sorted(sources, key=lambda p: (rank.get(p.name, len(rank)), p.name)):
        code = path.read_text(encoding="utf-8").rstrip("\n")
        fence = "````" if "```" in code else "```"  # a longer fence keeps inner backticks literal
        parts.append(f"## {path.name}\n\n{fence}python\n{code}\n{fence}\n")
    return "\n".join(parts)
