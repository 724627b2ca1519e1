"""A provider that answers with recorded replies from a folder: offline demos, tests, chat-only models."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmseg_mlflow.llm.base import LLMError, Message, Reply

if TYPE_CHECKING:
    from llmseg_mlflow.catalog.models import ModelSpec

FOLDER_LAYOUT = (
    "a replay folder must hold the assistant's replies in order as 01.md, 02.md, ... (Markdown with fenced "
    "code, optionally 01.reasoning.md with the reasoning trace of reply 01), or simply the generated .py files "
    "(dataset.py, model.py, train.py, main.py); a subfolder named after a dataset key holds the replies for "
    "that dataset"
)
_REPLY = re.compile(r"^(\d+)\.md$")
_FILE_ORDER = ("dataset.py", "model.py", "train.py", "main.py")
_CHARS_PER_TOKEN = 4  # rough rule of thumb for English and code; replies carry no real token counts


@dataclass(frozen=True)
class RecordedReply:
    """One recorded assistant turn and the file it came from."""

    text: str
    reasoning: str | None
    source: Path


def recorded_replies(folder: Path) -> list[RecordedReply]:
    """The replies in folder, in order: NN.md files by number, else one reply synthesised from the .py files."""
    numbered = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if p.is_file() and (m := _REPLY.match(p.name))
    )
    if numbered:
        replies = []
        for number, path in numbered:
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


class ReplayProvider:
    """Answers the k-th assistant turn with the k-th recorded reply of the model's folder.

    The same recording answers every repeat: a recording is one conversation, replayed as it happened.
    """

    def __init__(self, spec: "ModelSpec", *, dataset: str, repeat: int) -> None:
        root = spec.replay_dir
        if root is None or not Path(root).is_dir():
            raise LLMError(f"model {spec.key!r} has no replay folder ({root}); {FOLDER_LAYOUT}")
        root = Path(root)
        # An answer depends on the dataset the prompt describes, so a dataset's own subfolder wins.
        self.folder = root / dataset if (root / dataset).is_dir() else root
        self.spec, self.dataset, self.repeat = spec, dataset, repeat
        self.replies = recorded_replies(self.folder)
        if not self.replies:
            subfolders = sorted(p.name for p in root.iterdir() if p.is_dir() and recorded_replies(p))
            found = f" (it has replies for: {', '.join(subfolders)})" if subfolders else ""
            raise LLMError(f"replay folder {root} has no replies for dataset {dataset!r}{found}; {FOLDER_LAYOUT}")

    def complete(self, messages: list[Message]) -> Reply:
        """The recorded reply for the next assistant turn; LLMError when the recording has run out."""
        start = time.perf_counter()
        turn = sum(1 for m in messages if m.role == "assistant")
        if turn >= len(self.replies):
            raise LLMError(
                f"replay folder {self.folder} has {len(self.replies)} replies; the pipeline asked for reply "
                f"{turn + 1}. Add {turn + 1:02d}.md with the next answer to replay further."
            )
        reply = self.replies[turn]
        prompt_chars = sum(len(m.content) for m in messages)
        return Reply(
            text=reply.text,
            reasoning=reply.reasoning,
            tokens_in=prompt_chars // _CHARS_PER_TOKEN,
            tokens_out=len(reply.text) // _CHARS_PER_TOKEN,
            tokens_reasoning=len(reply.reasoning or "") // _CHARS_PER_TOKEN,
            latency_s=time.perf_counter() - start,
            cost_usd=0.0,
            raw={"estimated_tokens": True, "replay_file": str(reply.source), "reply_number": turn + 1},
        )
