"""Turn a failed execution into an error type (the paper's Fig. 2 categories) and the text fed back."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from llmseg_mlflow.pipeline.sandbox import ExecResult
from llmseg_mlflow.tracking.schema import DISK_QUOTA, KILLED, OUT_OF_MEMORY, TIMEOUT, TOO_MANY_PROCESSES

_TRACEBACK = "Traceback (most recent call last):"
# The exception line closing a traceback: "pkg.mod.ErrorName: message" or a bare "ErrorName".
_EXC_LINE = re.compile(r"^(?P<qual>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
# A pasted error without its traceback: "KeyError: 'image'" (chat users often copy only the last line).
_PASTED_ERROR = re.compile(r"^(?P<qual>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))(?::\s?(?P<msg>.*))?$")
_FRAME = re.compile(r'File "(?P<path>[^"]*)", line \d+, in \S+')
_FLAT_ERROR = re.compile(r"(?:^|\s)(?P<qual>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)):\s?(?P<msg>.*)$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SUGGESTION = re.compile(r"\.?\s*Did you mean:? .*\?$")  # Python 3.10+: "... is not defined. Did you mean: 'x'?"
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory")
MAX_FEEDBACK_CHARS = 12_000  # keeps a runaway traceback from flooding the context window


@dataclass(frozen=True)
class ExecError:
    """One failed execution: its type, the one-line message and the text the LLM is sent."""

    error_type: str
    message: str
    feedback: str


def _clean(text: str) -> str:
    """Drop tqdm's carriage-return redraws so only the final state of each line is kept."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())


def last_traceback(stderr: str) -> str | None:
    """The last traceback in stderr, from its first line to the exception line, verbatim."""
    text = _clean(stderr)
    start = text.rfind(_TRACEBACK)
    if start < 0:
        return None
    # Chained exceptions ("During handling of the above exception...") belong to the same report.
    for marker in ("\nDuring handling of the above exception", "\nThe above exception was the direct cause"):
        idx = text.rfind(marker, 0, start)
        if idx >= 0:
            chain_start = text.rfind(_TRACEBACK, 0, idx)
            start = min(start, chain_start) if chain_start >= 0 else start
    return text[start:].strip()


def exception_line(traceback: str) -> tuple[str, str]:
    """(qualified exception name, message) from a traceback's final non-indented line."""
    for line in reversed(traceback.splitlines()):
        if not line.strip() or line.startswith((" ", "\t")) or line.startswith(_TRACEBACK):
            continue
        match = _EXC_LINE.match(line.strip())
        if match and (match["msg"] is not None or line.strip()[0].isupper()):
            return match["qual"], (match["msg"] or "").strip()
    return "UnknownError", traceback.strip().splitlines()[-1] if traceback.strip() else ""


def recorded_error(text: str) -> tuple[str, str] | None:
    """(error type, message) of the error a person pasted into a chat, or None when the text holds none.

    The last line that names an error wins (chat copies lose a traceback's indentation, and people add words
    after it); a traceback without such a line falls back to its closing line."""
    for line in reversed(_clean(text).splitlines()):
        match = _PASTED_ERROR.match(line.strip())
        if match:
            return match["qual"].rsplit(".", 1)[-1], (match["msg"] or "").strip()
    for line in reversed(_clean(text).splitlines()):
        if (error := flat_error(line)) is not None:
            return error
    tb = last_traceback(text)
    if tb is not None:
        qual, message = exception_line(tb)
        return qual.rsplit(".", 1)[-1], message
    return None


def flat_error(line: str) -> tuple[str, str] | None:
    """(error type, message) of a traceback pasted on one line (a chat page lost its line breaks), or None: the
    error follows the last frame's code line."""
    if "Traceback (most recent call last)" not in line and not _FRAME.search(line):
        return None
    match = _FLAT_ERROR.search(_FRAME.split(line)[-1])
    return (match["qual"].rsplit(".", 1)[-1], (match["msg"] or "").strip()) if match else None


def error_text(error: tuple[str, str]) -> str:
    """`Type: message`, or the bare type when there is no message."""
    return f"{error[0]}: {error[1]}" if error[1] else error[0]


_UNDEFINED = re.compile(r"NameError: name '(?P<name>\w+)' is not defined")


def undefined_name(text: str, files: set[str] | frozenset[str]) -> tuple[str, str] | None:
    """(file, name) of a traceback's `NameError: name 'X' is not defined` raised in one of files (the last
    frame of theirs, Windows paths too): where the import a fix sends for X belongs."""
    found = _UNDEFINED.search(text)
    frames = [re.split(r"[\\/]", m["path"])[-1] for m in _FRAME.finditer(text[: found.start()] if found else "")]
    ours = [name for name in frames if name in files]
    return (ours[-1], found["name"]) if found and ours else None


def masked(message: str) -> str:
    """The message with every number as N, whitespace collapsed and Python's "Did you mean" hint dropped: shapes,
    sizes and line numbers follow the data and the run, the hint the names around the error; the cause stays."""
    message = _SUGGESTION.sub("", message).rstrip(". ")
    return " ".join(_NUMBER.sub("N", message).split())


def same_error(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two (type, message) pairs name the same error, numbers and whitespace aside."""
    return a[0] == b[0] and masked(a[1]) == masked(b[1])


def _is_oom(qualname: str, message: str) -> bool:
    name = qualname.rsplit(".", 1)[-1]
    return name in ("MemoryError", "OutOfMemoryError") or any(t in message.lower() for t in _OOM_TEXT)


def _cap(text: str) -> str:
    if len(text) <= MAX_FEEDBACK_CHARS:
        return text
    head = text[: MAX_FEEDBACK_CHARS // 4]
    return head + "\n...\n" + text[-(MAX_FEEDBACK_CHARS * 3 // 4) :]


def classify(
    result: ExecResult,
    timeout_s: float,
    memory_gb: float,
    disk_gb: float | None = None,
    max_processes: int | None = None,
) -> ExecError:
    """Classify a failed execution; its feedback is the traceback verbatim where there is one."""
    if result.timed_out:
        msg = f"the program did not finish within {timeout_s:g} seconds and was stopped"
        return ExecError(TIMEOUT, msg, f"TimeoutError: {msg}")
    if result.out_of_memory:
        msg = (
            f"the program used more than {memory_gb:g} GB of memory (files in /tmp and /dev/shm count) and was stopped"
        )
        return ExecError(OUT_OF_MEMORY, msg, f"MemoryError: {msg}")
    if result.disk_quota:
        msg = f"the program wrote more than {disk_gb or 0:g} GB into its folder and was stopped"
        return ExecError(DISK_QUOTA, msg, f"OSError: [Errno 122] Disk quota exceeded: {msg}")
    if result.too_many_processes:
        # The traceback (BlockingIOError, "can't start new thread") is the verbatim feedback; the type
        # says why, so Fig. 2 counts it apart from the code's own errors.
        msg = f"the program tried to run more than {max_processes or 0} processes and threads at once"
        tb = last_traceback(result.stderr_text())
        return ExecError(TOO_MANY_PROCESSES, msg, _cap(tb) if tb else f"RuntimeError: {msg}")
    stderr = result.stderr_text()
    tb = last_traceback(stderr)
    if tb is not None:
        qual, message = exception_line(tb)
        kind = (
            OUT_OF_MEMORY
            if _is_oom(qual, message)
            else DISK_QUOTA
            if "[Errno 27]" in message  # EFBIG: a file hit RLIMIT_FSIZE, i.e. --disk-gb
            else qual.rsplit(".", 1)[-1]
        )
        return ExecError(kind, message, _cap(tb))
    code = result.returncode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        kind = OUT_OF_MEMORY if name == "SIGKILL" else DISK_QUOTA if name == "SIGXFSZ" else KILLED
        msg = f"the program was killed by {name}"
        tail = _clean(stderr).strip()[-2000:]
        return ExecError(kind, msg, (tail + "\n" if tail else "") + msg)
    tail = _clean(stderr).strip()[-4000:] or _clean(result.stdout_text()).strip()[-4000:]
    msg = f"the program exited with status {code}"
    return ExecError("SystemExit", msg, tail or msg)
