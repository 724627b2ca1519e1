"""The turns of a chat transcript pasted from a web interface: who said what, on which lines.

Each interface marks turns its own way (ChatGPT "You said:" / "ChatGPT said:", Gemini, Copilot); Poe marks
none, its messages end with a timestamp, and older Poe pages only open each bot message with its name and
"Poe". pipeline/chat_import.py then reads the code out of the assistant turns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmseg_mlflow.pipeline.errors import flat_error, recorded_error

FORMATS = ("auto", "poe", "chatgpt", "gemini", "copilot", "claude", "qwen", "plain")

Line = tuple[int, str]  # (1-based line number in the transcript, text)

# Turn markers, one line each. Poe has none: its messages end with a timestamp (see _poe_turns).
_MARKERS: dict[str, tuple[str, str]] = {
    "chatgpt": (r"You said:", r"ChatGPT said:"),
    "gemini": (r"You said:?", r"Gemini said:?|Show thinking"),
    "copilot": (r"You said:?|You", r"Copilot said:?|Copilot|GitHub Copilot:?"),
    # A role alone, with a colon, or as a heading; a one-`#` line without a colon is a Python comment
    # (`# Model` above a model's construction), never a marker.
    "plain": (
        r"(?:#{2,6}\s*|#\s*(?=\w+\s*:))?(?:User|You|Human|Prompt)\s*:?",
        r"(?:#{2,6}\s*|#\s*(?=\w+\s*:))?(?:Assistant|AI|Model|Bot)\s*:?",
    ),
    # claude.ai: the person's message ends with its "Edit" button; nothing marks where a later one starts, so
    # only a transcript of one reply is read whole (a second user message would stay in the reply).
    "claude": (r"(?!)", r"Edit"),
    # chat.qwen.ai: each reply opens with "profile" and the model's name; nothing marks the person's turns.
    "qwen": (r"(?!)", r"profile"),
}
_TIMESTAMP = re.compile(r"^\d{1,2}:\d{2}(?:\s?[AaPp]\.?[Mm]\.?)?$")
_DAY = re.compile(
    r"^(?:Today|Yesterday|(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|[A-Z][a-z]{2,8} \d{1,2}(?:, \d{4})?)$"
)
_BOT_NAME = re.compile(r"^[A-Za-z][\w.\-]{1,40}$")
# Whole lines that are interface chrome, never content: buttons, markers, thinking toggles.
NOISE = re.compile(
    r"^(?:Copy|Copy code|Edit|Run|View more|Share|Retry|Sources|You said:?|ChatGPT said:|Copilot said:?"
    r"|Gemini said:?|Show thinking|Hide thinking|Bot image for .+|profile|Poe)$"
)


@dataclass
class Turn:
    """One message of the conversation with its transcript lines."""

    role: str  # "user" | "assistant"
    lines: list[Line]
    # The page marks where this message starts (an older Poe page's bot header), so it is never merged into
    # the message before it even when the person's turn between them cannot be told from the reply.
    opened: bool = False


def detect_format(text: str) -> str:
    """The interface a transcript was copied from, by its markers; "plain" when none is recognised."""
    lines = {line.strip() for line in text.splitlines()}
    if "ChatGPT said:" in lines:
        return "chatgpt"
    if {"Copilot said:", "Copilot said", "GitHub Copilot", "GitHub Copilot:"} & lines or {"You", "Copilot"} <= lines:
        return "copilot"  # Bing's page marks the turns with a bare `You` and `Copilot`
    if {"Show thinking", "Gemini said:", "Gemini said"} & lines:
        return "gemini"
    ordered = text.splitlines()
    if any(a.strip() == "profile" and b.strip().startswith("Qwen") for a, b in zip(ordered, ordered[1:])):
        return "qwen"  # before Poe's test: Qwen's page also shows times ("1:54 am")
    if any(_TIMESTAMP.match(line) for line in lines) and {"Copy", "Run"} & lines:
        return "poe"
    marks = _bot_marks([(0, line) for line in ordered])
    if "Edit" in lines and not marks:
        return "claude"
    if marks:
        return "poe"  # an older Poe page: each bot message opens with its name and "Poe"
    return "plain"


def split_turns(text: str, fmt: str) -> list[Turn]:
    """The transcript's messages in order; same-role neighbours are merged."""
    numbered = [(i + 1, line.rstrip()) for i, line in enumerate(text.splitlines())]
    if fmt == "poe":
        marks = _bot_marks(numbered)
        timed = any(_TIMESTAMP.match(t.strip()) for _, t in numbered)
        turns = _marked_poe_turns(numbered, marks) if marks and not timed else _poe_turns(numbered)
    else:
        turns = _marked_turns(numbered, fmt)
        if fmt != "claude" and not any(t.role == "user" and t.lines and k for k, t in enumerate(turns)):
            turns = _unmarked_user_turns(turns) or turns  # nothing marks the person's turns after the prompt
    merged: list[Turn] = []
    for turn in turns:
        if not any(t.strip() for _, t in turn.lines):
            continue
        if merged and merged[-1].role == turn.role and not turn.opened:
            merged[-1].lines.extend(turn.lines)
        else:
            merged.append(turn)
    return merged


def _marked_turns(lines: list[Line], fmt: str) -> list[Turn]:
    user, assistant = (re.compile(rf"^(?:{p})$") for p in _MARKERS[fmt])
    # Text before the first marker is the prompt: interfaces label the user's first message, if at all, above it.
    turns = [Turn("user", [])]
    for number, text in lines:
        if assistant.match(text.strip()):
            turns.append(Turn("assistant", [(number, text)]))  # the marker stays: it may open reasoning
        elif user.match(text.strip()):
            turns.append(Turn("user", []))
        else:
            turns[-1].lines.append((number, text))
    return turns


def _poe_turns(lines: list[Line]) -> list[Turn]:
    """Poe ends every message with a timestamp line; the bot's messages start with its name."""
    segments: list[list[Line]] = [[]]
    for number, text in lines:
        if _TIMESTAMP.match(text.strip()):
            segments.append([])
        elif not _DAY.match(text.strip()):
            segments[-1].append((number, text))
    firsts = [next((t.strip() for _, t in seg if t.strip() and not NOISE.match(t.strip())), "") for seg in segments]
    bot = next((f for f in firsts[1:] if _BOT_NAME.match(f)), None)
    if bot is not None and firsts[0] == bot:
        segments[0] = _without_page_header(segments[0], bot)
        firsts[0] = ""  # what is left is the user's first message (Poe chats open with it)
    turns = []
    for seg, first in zip(segments, firsts):
        if bot is not None and first == bot:
            body = list(seg)
            while body and body[0][1].strip() != bot:
                body.pop(0)
            turns.append(Turn("assistant", body[1:]))
        else:
            turns.append(Turn("user", seg))
    return turns


def _without_page_header(seg: list[Line], bot: str) -> list[Line]:
    """The first segment without Poe's page header (bot name, "By", @handle, followers, description up to
    "View more", an "OFFICIAL" badge): copied with the page, it is no one's message (its @handle reads as a
    decorator)."""
    texts = [t.strip() for _, t in seg]
    filled = [i for i, t in enumerate(texts) if t]
    if len(filled) < 2 or texts[filled[0]] != bot or texts[filled[1]] != "By":
        return seg
    end = next((i for i in filled[:40] if texts[i] == "View more"), None)
    if end is None:
        return seg
    after = [i for i in filled if i > end]
    if after and texts[after[0]] == "OFFICIAL":
        end = after[0]
    return seg[end + 1 :]


# A line of the prompt's directory tree (`|-- main.py`, `├── main.py`, `└── main.py`): the tree closes the prompt.
_TREE_FILE = re.compile(r"^[\s|│├└─\-+`]*(dataset|model|train|main)\.py\s*$")
_CODE_START = re.compile(r"^(?:import |from \S+ import |def |class )")
# The last line of a pasted traceback: the exception, flush left.
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)\b")
# The IDE's last word on a run (PyCharm); a blank line after the exception belongs to the paste as well.
_EXIT_LINE = re.compile(r"^Process finished with exit code \d+$")


def _unmarked_user_turns(turns: list[Turn]) -> list[Turn]:
    """Turns of a copy where nothing marks the person's messages (DeepSeek's page marks nothing at all; GitHub
    Copilot's marks only its own replies after the first): the prompt ends with its directory tree of the four
    files when code follows it before any reply marker, and a pasted run is the person's turn. With neither
    a reply marker nor a tree, nothing is guessed: no turns."""
    first, rest = turns[0], turns[1:]
    end = _prompt_end(first.lines)
    if end is None and not rest:
        return []
    out = [first] if end is None else [Turn("user", first.lines[:end]), *_pasted_runs(first.lines[end:])]
    for turn in rest:
        out += _pasted_runs(turn.lines) if turn.role == "assistant" else [turn]
    return out


def _prompt_end(lines: list[Line]) -> int | None:
    """Index after the prompt's directory tree (four lines naming the four files) when code follows it."""
    for k in range(len(lines)):
        names = [m.group(1) for _, t in lines[k : k + 4] if (m := _TREE_FILE.match(t))]
        if sorted(names) == ["dataset", "main", "model", "train"]:
            after = lines[k + 4 :]
            return k + 4 if any(_CODE_START.match(t) for _, t in after) else None
    return None


def _pasted_runs(lines: list[Line]) -> list[Turn]:
    """An assistant turn split where the person pasted a run: from its command line or `Traceback` to the
    exception's line (the same line when the paste lost its line breaks), plus the IDE's closing line."""
    turns = [Turn("assistant", [])]
    in_run = False
    for number, text in lines:
        starts = not in_run and _PASTED_RUN.match(text.strip())
        if starts:
            in_run = True
            turns.append(Turn("user", []))
        ends = in_run and (_ERROR_LINE.match(text) or (starts and flat_error(text) is not None))
        if ends:
            in_run = False
            turns[-1].lines.append((number, text))
            turns.append(Turn("assistant", []))
        elif (
            turns[-2:][0].role == "user"
            and not turns[-1].lines
            and (not text.strip() or _EXIT_LINE.match(text.strip()))
        ):
            turns[-2].lines.append((number, text))  # the IDE's last word on the run is the person's paste too
        elif not in_run and _EXIT_LINE.match(text.strip()) and (paste := _last_paragraph(turns[-1].lines)):
            # A paste that starts mid-output ("Testing: 100%|... Traceback ...", a bare `File "..."`) is
            # found from its end: the IDE's exit line closes the paragraph that names the error.
            del turns[-1].lines[-len(paste) :]
            turns += [Turn("user", [*paste, (number, text)]), Turn("assistant", [])]
        else:
            turns[-1].lines.append((number, text))
    return turns


def _last_paragraph(lines: list[Line]) -> list[Line]:
    """The trailing paragraph of lines (blank lines after it included) when it names an error, else []."""
    k = len(lines)
    while k and not lines[k - 1][1].strip():
        k -= 1
    start = k
    while start and lines[start - 1][1].strip():
        start -= 1
    return lines[start:] if k and recorded_error("\n".join(t for _, t in lines[start:k])) is not None else []


def _paste_from_end(lines: list[Line]) -> int | None:
    """Where a paste that starts mid-traceback (a bare `File "..."` line) begins: the paragraph naming the error
    before the IDE's exit line, the last one in the lines; None when there is none."""
    ends = [k for k, (_, t) in enumerate(lines) if _EXIT_LINE.match(t.strip())]
    paste = _last_paragraph(lines[: ends[-1]]) if ends else []
    return ends[-1] - len(paste) if paste else None


# Where a person's pasted run starts on an older Poe page (nothing else marks their turn): the command line
# the IDE prints first, or the traceback itself.
_PASTED_RUN = re.compile(r"^(?:[A-Za-z]:\\|/)\S*python[\d.]*(?:\.exe)?\b|^Traceback \(most recent call last\):")
_HEADER_END = ("OFFICIAL", "View details")


def _bot_marks(lines: list[Line]) -> list[tuple[int, int]]:
    """(bot-name index, "Poe" index) of each message opening on an older Poe page: the name, a blank, "Poe"."""
    marks: list[tuple[int, int]] = []
    for k, (_, text) in enumerate(lines):
        if text.strip() != "Poe" or k < 2 or lines[k - 1][1].strip():
            continue
        name = lines[k - 2][1].strip()
        if _BOT_NAME.match(name) and (not marks or lines[marks[0][0]][1].strip() == name):
            marks.append((k - 2, k))
    return marks


def _marked_poe_turns(lines: list[Line], marks: list[tuple[int, int]]) -> list[Turn]:
    """An older Poe page: the page header, the prompt, then per bot message its reply and, where one starts
    with a pasted run (an IDE's command line, a traceback, or a paragraph naming the error before the IDE's
    exit line), the person's next message. Other things a person wrote between two replies cannot be told from
    the reply and stay in it; the replies stay apart."""
    head = [k for k, (_, t) in enumerate(lines[: marks[0][0]]) if t.strip() in _HEADER_END]
    turns = [Turn("user", lines[head[-1] + 1 if head else 0 : marks[0][0]])]
    for n, (_, poe) in enumerate(marks):
        body = lines[poe + 1 : marks[n + 1][0] if n + 1 < len(marks) else len(lines)]
        start = next((k for k, (_, t) in enumerate(body) if _PASTED_RUN.match(t.strip())), _paste_from_end(body))
        turns.append(Turn("assistant", body if start is None else body[:start], opened=True))
        if start is not None:
            turns.append(Turn("user", body[start:]))
    return turns
