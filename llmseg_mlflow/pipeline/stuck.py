"""Repeated error loops: the paper fed errors back verbatim "unless stuck in a repeated error loop".

An error's signature is its type, the last frame in the pipeline's own files and its message with the
numbers masked (shapes, line numbers and sizes change while the cause stays). The same signature N times
in a row is a loop: the pipeline ends `stuck_loop`, or, where the user allows it (--loop-hint), one
supplementary message follows the traceback (an "additional interaction" in the paper's words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmseg_mlflow.pipeline.errors import ExecError, masked

PIPELINE_FILES = ("dataset.py", "model.py", "train.py", "main.py")
DEFAULT_HINT = (
    "This is the same error as in your previous {n} answers: the changes so far did not reach its cause. "
    "Before writing code, explain in two or three sentences what causes it at the line the traceback shows "
    "(for example the shapes, channel counts, data types, file names or paths involved there), then fix "
    "that cause, and resend every file you change in full."
)
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+, in (?P<func>\S+)\s*$')


def signature(error: ExecError) -> tuple[str, str, str]:
    """(type, last frame of the pipeline's own code, message with numbers masked) of one error."""
    frame = ""
    lines = error.feedback.splitlines()
    for i, line in enumerate(lines):
        match = _FRAME.match(line)
        if match and match["path"].rsplit("/", 1)[-1] in PIPELINE_FILES:
            code = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME.match(lines[i + 1]) else ""
            frame = f"{match['path'].rsplit('/', 1)[-1]}:{match['func']}:{code}"
    return error.error_type, frame, masked(error.message)


@dataclass
class LoopWatch:
    """Counts the same signature in a row and says when to step in or stop."""

    after: int = 3  # N; 0 never calls it a loop
    hint: str | None = None  # supplementary message ("default": DEFAULT_HINT); None: stop instead
    interventions: int = 0
    _last: tuple[str, str, str] | None = None
    _streak: int = 0

    def see(self, error: ExecError) -> str:
        """'continue', 'intervene' (send the hint once) or 'stop' after this error."""
        sig = signature(error)
        self._streak = self._streak + 1 if sig == self._last else 1
        self._last = sig
        if not self.after or self._streak < self.after:
            return "continue"
        if self.hint is not None and self.interventions == 0:
            self.interventions += 1
            self._streak = 0  # the hint gets N more rounds to work
            return "intervene"
        return "stop"

    def hint_text(self) -> str:
        """The supplementary message, with {n} filled."""
        text = DEFAULT_HINT if self.hint in (None, "default") else self.hint
        return text.replace("{n}", str(self.after))
