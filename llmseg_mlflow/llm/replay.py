"""A provider that answers with recorded replies from a folder: offline demos, tests, chat-only models."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from llmseg_mlflow.catalog.replay_folder import FOLDER_LAYOUT, recorded_replies
from llmseg_mlflow.llm.base import LLMError, Message, RecordingEnded, Reply

_CHARS_PER_TOKEN = 4  # rough rule of thumb for English and code; replies carry no real token counts

if TYPE_CHECKING:
    from llmseg_mlflow.catalog.models import ModelSpec


class ReplayProvider:
    """Answers the k-th assistant turn with the k-th recorded reply of the model's folder.

    The same recording answers every repeat: a recording is one conversation, replayed as it happened.
    """

    def __init__(self, spec: ModelSpec, *, dataset: str, repeat: int) -> None:
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
            raise RecordingEnded(
                f"replay folder {self.folder} has {len(self.replies)} replies; the pipeline asked for reply "
                f"{turn + 1}. Add {turn + 1:02d}.md with the next answer to replay further."
            )
        reply = self.replies[turn]
        prompt_chars = sum(len(m.content) for m in messages)
        raw: dict = {"estimated_tokens": True, "replay_file": str(reply.source), "reply_number": turn + 1}
        # An imported chat keeps what the person sent before this reply (NN.user.md): the loop compares it
        # with what the harness sent, so a reader sees where the two environments parted.
        user_turn = self.folder / f"{turn + 1:02d}.user.md"
        if turn > 0 and user_turn.is_file():
            raw["recorded_user_turn"] = str(user_turn)
        return Reply(
            text=reply.text,
            reasoning=reply.reasoning,
            tokens_in=prompt_chars // _CHARS_PER_TOKEN,
            tokens_out=len(reply.text) // _CHARS_PER_TOKEN,
            tokens_reasoning=len(reply.reasoning or "") // _CHARS_PER_TOKEN,
            latency_s=time.perf_counter() - start,
            cost_usd=0.0,
            raw=raw,
        )
