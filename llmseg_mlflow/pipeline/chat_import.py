"""Turn a chat transcript pasted from a web interface (Poe, ChatGPT, Gemini, Copilot) into a replay folder.

Text copied from a chat page loses the Markdown fences, keeps button labels ("Copy", "Run"), timestamps
and model headers, and mixes reasoning into the answer. This module undoes that much, then hands each
reply to pipeline/extract.py, the same reader the replay uses, so what import.json says a reply carries is
what the replay will apply. Nothing is guessed silently: unnamed code stops the import, and every guess
by content, superseded block or undelimited reasoning is listed in import.json.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.pipeline.extract import CODE_FILES, find_blocks, match_existing, merge_reply
from llmseg_mlflow.pipeline.splice import is_partial

FORMATS = ("auto", "poe", "chatgpt", "gemini", "copilot", "plain")

Line = tuple[int, str]  # (1-based line number in the transcript, text)

# Turn markers, one line each. Poe has none: its messages end with a timestamp (see _poe_turns).
_MARKERS: dict[str, tuple[str, str]] = {
    "chatgpt": (r"You said:", r"ChatGPT said:"),
    "gemini": (r"You said:?", r"Gemini said:?|Show thinking"),
    "copilot": (r"You said:?|You", r"Copilot said:?|Copilot|GitHub Copilot:?"),
    "plain": (r"(?:#+\s*)?(?:User|You|Human|Prompt)\s*:?", r"(?:#+\s*)?(?:Assistant|AI|Model|Bot)\s*:?"),
}
_TIMESTAMP = re.compile(r"^\d{1,2}:\d{2}(?:\s?[AaPp]\.?[Mm]\.?)?$")
_DAY = re.compile(
    r"^(?:Today|Yesterday|(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|[A-Z][a-z]{2,8} \d{1,2}(?:, \d{4})?)$"
)
_BOT_NAME = re.compile(r"^[A-Za-z][\w.\-]{1,40}$")
# Whole lines that are interface chrome, never content: buttons, markers, thinking toggles.
_NOISE = re.compile(
    r"^(?:Copy|Copy code|Edit|Run|View more|Share|Retry|Sources|You said:?|ChatGPT said:|Copilot said:?"
    r"|Gemini said:?|Show thinking|Hide thinking|Bot image for .+|profile|Poe)$"
)
_REASONING_HEAD = re.compile(r"^(?:Thinking(?:\.\.\.|…)?|Thought for .+|Reasoned for .+|Show thinking|Hide thinking)$")
_REASONING_END = re.compile(r"^(?:Done|End of thinking)$")
_LANG_TAG = re.compile(
    r"^(?:python3?|py|bash|sh|shell|console|powershell|cmd|text|plaintext|txt|markdown|md|css|json|ya?ml|toml|ini"
    r"|diff|arduino|csharp|javascript)$",
    re.I,
)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
# An unfenced block starts at an unindented import/def/class (or a file comment right above one).
_CODE_START = re.compile(r"^(?:import \w|from [\w.]+ import |(?:async )?def \w+\s*\(|class \w+\s*[(:]|@\w)")
# Unindented lines that keep an unfenced block going; any other unindented text is prose again.
_CODE_LINE = re.compile(
    r"^(?:[#@)\]}├│└]|[rbuf]*(?:\"\"\"|''')|(?:import|from|def|class|if|elif|else|for|while|with|try|except|finally"
    r"|return|raise|assert|async|await|global|nonlocal|del|pass|break|continue|yield|lambda)\b"
    r"|[\w.\[\]'\"]+(?:\s*,\s*[\w.\[\]'\"]+)*\s*(?:[-+*/%&|^@]|//|\*\*|<<|>>)?=(?!=)|[\w.]+\()"
)
_FILE_COMMENT = re.compile(r"^#\s*\S*\.py\b")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*[\w.]*(?:Error|Exception)\b:", re.M)
_ERROR_LINE = re.compile(r"^\s*([\w.]*(?:Error|Exception)\b.*)$")
# What a block defines, to tell when one unnamed block holds more than one pipeline file.
_KINDS = {
    "dataset": re.compile(r"^class\s+\w+\s*\([^)]*Dataset\s*\)", re.M),
    "model": re.compile(r"^class\s+\w*(?:U-?Net|Net)\w*\s*\([^)]*Module\s*\)", re.M | re.I),
    "train": re.compile(r"^def\s+(?:train|valid|evaluate)\w*\s*\(", re.M),
}


@dataclass
class Turn:
    """One message of the conversation with its transcript lines."""

    role: str  # "user" | "assistant"
    lines: list[Line]


@dataclass
class Block:
    """A code block recovered from a reply: its language and transcript lines."""

    language: str
    lines: list[Line]
    gap: list[str] = field(default_factory=list)  # the prose since the previous block, for naming

    @property
    def span(self) -> list[int]:
        return [self.lines[0][0], self.lines[-1][0]] if self.lines else []

    def markdown(self) -> str:
        code = "\n".join(t for _, t in self.lines)
        fence = "````" if "```" in code else "```"
        return f"{fence}{self.language}\n{code}\n{fence}"


@dataclass
class ImportResult:
    """What import_chat wrote and what it could not place."""

    folder: Path
    format: str
    replies: list[dict[str, Any]]
    trailing_user_turn: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "format": self.format,
            "replies": self.replies,
            "trailing_user_turn": self.trailing_user_turn,
        }


def detect_format(text: str) -> str:
    """The interface a transcript was copied from, by its markers; "plain" when none is recognised."""
    lines = {line.strip() for line in text.splitlines()}
    if "ChatGPT said:" in lines:
        return "chatgpt"
    if {"Copilot said:", "Copilot said", "GitHub Copilot", "GitHub Copilot:"} & lines:
        return "copilot"
    if {"Show thinking", "Gemini said:", "Gemini said"} & lines:
        return "gemini"
    if any(_TIMESTAMP.match(line) for line in lines) and {"Copy", "Run"} & lines:
        return "poe"
    return "plain"


def split_turns(text: str, fmt: str) -> list[Turn]:
    """The transcript's messages in order; same-role neighbours are merged."""
    numbered = [(i + 1, line.rstrip()) for i, line in enumerate(text.splitlines())]
    turns = _poe_turns(numbered) if fmt == "poe" else _marked_turns(numbered, fmt)
    merged: list[Turn] = []
    for turn in turns:
        if not any(t.strip() for _, t in turn.lines):
            continue
        if merged and merged[-1].role == turn.role:
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
    firsts = [next((t.strip() for _, t in seg if t.strip() and not _NOISE.match(t.strip())), "") for seg in segments]
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


def _take_reasoning(lines: list[Line]) -> tuple[str | None, list[Line], list[str]]:
    """Split a reply into its reasoning (quoted lines or text up to an end line after a header) and the rest."""
    notes: list[str] = []
    for k, (number, text) in enumerate(lines):
        if not _REASONING_HEAD.match(text.strip()):
            continue
        rest = lines[k + 1 :]
        body = [j for j, (_, t) in enumerate(rest) if t.strip()]
        if body and rest[body[0]][1].lstrip().startswith(">"):
            end = body[0]
            while end < len(rest) and (not rest[end][1].strip() or rest[end][1].lstrip().startswith(">")):
                end += 1
            quoted = [re.sub(r"^\s*>\s?", "", t) for _, t in rest[:end]]
            return "\n".join(quoted).strip() + "\n", lines[:k] + rest[end:], notes
        ends = [j for j, (_, t) in enumerate(rest) if _REASONING_END.match(t.strip())]
        if ends:
            trace = "\n".join(t for _, t in rest[: ends[0]]).strip() + "\n"
            return trace, lines[:k] + rest[ends[0] + 1 :], notes
        # No quotes, no end line: where thinking stops cannot be told, so any expanded text stays in the reply.
        notes.append(
            f"line {number}: reasoning header {text.strip()!r} dropped; no quoted or closed reasoning after it"
        )
        return None, lines[:k] + rest, notes
    return None, lines, notes


class _Scan:
    """Whether a line leaves a bracket or triple-quoted string open: then the next line is still code."""

    def __init__(self) -> None:
        self.depth, self.triple = 0, ""

    def feed(self, line: str) -> None:
        i = 0
        while i < len(line):
            if self.triple:
                end = line.find(self.triple, i)
                if end < 0:
                    return
                i, self.triple = end + 3, ""
                continue
            ch = line[i]
            if ch == "#":
                return
            if line.startswith(('"""', "'''"), i):
                self.triple, i = line[i : i + 3], i + 3
            elif ch in "\"'":
                end = line.find(ch, i + 1)
                while end > 0 and line[end - 1] == "\\":
                    end = line.find(ch, end + 1)
                i = len(line) if end < 0 else end + 1
            else:
                self.depth += (ch in "([{") - (ch in ")]}")
                self.depth = max(self.depth, 0)
                i += 1

    @property
    def open(self) -> bool:
        return self.depth > 0 or bool(self.triple)


def _next_text(lines: list[Line], k: int) -> int:
    """Index of the next line after k that is neither blank nor a button label."""
    k += 1
    while k < len(lines) and (not lines[k][1].strip() or lines[k][1].strip() in {"Copy", "Copy code", "Edit", "Run"}):
        k += 1
    return k


def _segments(lines: list[Line]) -> list[Block]:
    """The reply's code blocks (fenced, language-tagged, or bare code after prose) and its prose lines."""
    has_fences = any(_FENCE.match(t) for _, t in lines)
    blocks: list[Block] = []
    prose: list[str] = []
    k = 0
    while k < len(lines):
        text = lines[k][1]
        fence = _FENCE.match(text)
        if fence:
            close = next((j for j in range(k + 1, len(lines)) if lines[j][1].strip() == fence[1]), len(lines))
            blocks.append(Block(fence[2].strip(), lines[k + 1 : close], prose))
            prose, k = [], close + 1
            continue
        start, language = None, "python"
        if _LANG_TAG.match(text.strip()) and not has_fences and _next_text(lines, k) < len(lines):
            start, language = _next_text(lines, k), text.strip().lower()
        elif not has_fences and (_CODE_START.match(text) or _file_comment_above_code(lines, k)):
            start = k
        if start is None:
            if not _NOISE.match(text.strip()):
                prose.append(text)
            k += 1
            continue
        end = _code_end(lines, start)
        blocks.append(Block("python" if language in {"py", "python3"} else language, lines[start:end], prose))
        prose, k = [], end
    if prose:
        blocks.append(Block("", [], prose))  # the closing prose, kept in the reply
    return blocks


def _file_comment_above_code(lines: list[Line], k: int) -> bool:
    """A `# model.py` line right above an import or def opens the block it names."""
    after = _next_text(lines, k)
    return bool(_FILE_COMMENT.match(lines[k][1])) and after < len(lines) and bool(_CODE_START.match(lines[after][1]))


def _code_end(lines: list[Line], start: int) -> int:
    """Index just past an unfenced block: it runs until unindented prose outside any open bracket or string."""
    scan = _Scan()
    end = start
    for j in range(start, len(lines)):
        text = lines[j][1]
        stripped = text.strip()
        continuation = scan.open or (j > start and lines[j - 1][1].rstrip().endswith("\\"))
        if j > start and stripped and not continuation:
            if _FENCE.match(text) or (_LANG_TAG.match(stripped) and _next_text(lines, j) < len(lines)):
                break
            if not text[0].isspace() and not _CODE_LINE.match(text):
                break
        scan.feed(text)
        if stripped:
            end = j + 1
    return end


def _classify_user(turn: Turn | None, first: bool) -> dict[str, Any] | None:
    if turn is None:
        return None
    text = "\n".join(t for _, t in turn.lines).strip()
    kind = "prompt" if first else "traceback" if _TRACEBACK.search(text) else "other"
    errors = [m.group(1).strip() for line in text.splitlines() if (m := _ERROR_LINE.match(line))]
    return {
        "kind": kind,
        "lines": [turn.lines[0][0], turn.lines[-1][0]],
        "error": errors[-1] if kind == "traceback" and errors else None,
        "text": text + "\n",
    }


def _kinds(code: str) -> list[str]:
    return [kind for kind, pattern in _KINDS.items() if pattern.search(code)]


def _read_reply(number: int, turn: Turn, current: dict[str, str]) -> dict[str, Any]:
    """One assistant turn -> its Markdown, reasoning and the files it carries; UsageError when code is unnamed."""
    reasoning, body, notes = _take_reasoning(turn.lines)
    blocks = _segments(body)
    parts: list[str] = []
    unplaced: list[str] = []
    guessed: dict[str, str] = {}
    other: list[dict[str, Any]] = []
    for block in blocks:
        parts.extend(block.gap)
        if not block.lines:
            continue
        parts.append(block.markdown())
        named = find_blocks("\n".join(block.gap) + "\n" + block.markdown())
        if not named:
            other.append({"language": block.language or "none", "lines": block.span})
            continue
        for code in named:
            if code.name is None and (target := match_existing(code, current)) is not None:
                guessed[target] = "definitions"  # it redefines functions or classes of that file: spliced in
            elif code.name is None:
                unplaced.append(f"lines {block.span[0]}-{block.span[1]}")
            elif code.how == "content":
                if len(_kinds(code.code)) > 1:
                    unplaced.append(
                        f"lines {block.span[0]}-{block.span[1]} (one unnamed block holding {' and '.join(_kinds(code.code))} code)"
                    )
                guessed[code.name] = "content"
    if unplaced:
        raise UsageError(
            f"reply {number} (transcript lines {turn.lines[0][0]}-{turn.lines[-1][0]}): cannot tell which file "
            f"these lines belong to: {'; '.join(unplaced)}. Add a file header (e.g. 'model.py') above the code "
            "and import again."
        )
    markdown = "\n".join(parts).strip() + "\n"
    pieces = find_blocks(markdown)
    merged = merge_reply(current, markdown) if any(p.name for p in pieces) else dict(current)
    superseded = [p.name for p in pieces if p.name and p.code not in merged.values()]
    # a piece that is only part of the file it fixes (a function, some imports) was spliced into it
    spliced = sorted(
        {n for p in pieces if (n := p.name or match_existing(p, current)) in current and is_partial(p.code, current[n])}
    )
    carried = sorted({n for n, c in merged.items() if any(p.code == c for p in pieces)} | set(spliced))
    named_by = {p.name: p.how for p in pieces if p.name in carried}
    return {
        "markdown": markdown,
        "reasoning": reasoning,
        "merged": merged,
        "record": {
            "reply": number,
            "file": f"{number:02d}.md",
            "reasoning_file": f"{number:02d}.reasoning.md" if reasoning else None,
            "lines": [turn.lines[0][0], turn.lines[-1][0]] if turn.lines else [],
            "files": carried,
            "named_by": named_by,
            "guessed_by_content": sorted(guessed),
            "spliced": spliced,
            "superseded_blocks": superseded,
            "other_blocks": other,
            "missing_after": sorted(n for n in CODE_FILES if n not in merged),
            "notes": notes,
        },
    }


def import_chat(source: Path, out: Path, fmt: str = "auto") -> ImportResult:
    """Write a replay folder (NN.md, NN.reasoning.md, NN.user.md, import.json) from a pasted transcript."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown transcript format {fmt!r}; choose one of {', '.join(FORMATS)}")
    text = Path(source).read_text(encoding="utf-8", errors="replace")
    fmt = detect_format(text) if fmt == "auto" else fmt
    turns = split_turns(text, fmt)
    if not any(t.role == "assistant" for t in turns):
        raise UsageError(f"{source}: no assistant replies found as a {fmt} transcript; try --format")
    replies: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    before: Turn | None = None
    for turn in turns:
        if turn.role == "user":
            before = turn
            continue
        reply = _read_reply(len(replies) + 1, turn, current)
        reply["record"]["user_turn"] = _classify_user(before, first=not replies)
        current, before = reply["merged"], None
        replies.append(reply)
        records.append(reply["record"])
    if not any(r["files"] for r in records):
        raise UsageError(
            f"{source}: none of the {len(records)} assistant replies holds Python code for "
            f"{', '.join(CODE_FILES)} (read as a {fmt} transcript); nothing to replay"
        )
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    for reply in replies:
        record = reply["record"]
        stem = f"{record['reply']:02d}"
        (out / f"{stem}.md").write_text(reply["markdown"], encoding="utf-8")
        if reply["reasoning"]:
            (out / f"{stem}.reasoning.md").write_text(reply["reasoning"], encoding="utf-8")
        user = record["user_turn"]
        if user is not None:
            (out / f"{stem}.user.md").write_text(user.pop("text"), encoding="utf-8")
            user["file"] = f"{stem}.user.md"
    trailing = _classify_user(before, first=False)
    if trailing is not None:
        (out / "trailing.user.md").write_text(trailing.pop("text"), encoding="utf-8")
        trailing["file"] = "trailing.user.md"
    result = ImportResult(out, fmt, records, trailing)
    manifest = {"source": str(source), **result.as_dict()}
    manifest.pop("folder")
    (out / "import.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return result


def _check_out(out: Path) -> None:
    """Refuse to mix two conversations in one folder: the replay reads every NN.md it finds."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose a new folder")
