"""Turn a chat transcript pasted from a web interface (Poe, ChatGPT, Gemini, Copilot) into a replay folder.

Text copied from a chat page loses the Markdown fences, keeps button labels ("Copy", "Run"), timestamps
and model headers, and mixes reasoning into the answer. This module undoes that much, then hands each
reply to pipeline/extract.py, the same reader the replay uses, so what import.json says a reply carries is
what the replay will apply. Nothing is guessed silently: unnamed code stops the import, and every guess
by content, superseded block or undelimited reasoning is listed in import.json.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.pipeline.chat_turns import FORMATS, NOISE, Line, Turn, detect_format, split_turns
from llmseg_mlflow.pipeline.errors import error_text, recorded_error
from llmseg_mlflow.pipeline.extract import (
    CODE_FILES,
    CodeBlock,
    NoCodeError,
    find_blocks,
    match_existing,
    merge_reply,
    offered_instead,
)
from llmseg_mlflow.pipeline.splice import elides, is_partial

__all__ = ["FORMATS", "detect_format", "import_chat", "split_turns"]  # the turn reading is re-exported

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
# What a block defines, to tell when one unnamed block holds more than one pipeline file.
_KINDS = {
    "dataset": re.compile(r"^class\s+\w+\s*\([^)]*Dataset\s*\)", re.M),
    "model": re.compile(r"^class\s+\w*(?:U-?Net|Net)\w*\s*\([^)]*Module\s*\)", re.M | re.I),
    "train": re.compile(r"^def\s+(?:train|valid|evaluate)\w*\s*\(", re.M),
}


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
    stopped_at: dict[str, Any] | None = None  # with partial=True: the reply that could not be placed, and why

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "format": self.format,
            "replies": self.replies,
            "trailing_user_turn": self.trailing_user_turn,
            "stopped_at": self.stopped_at,
        }


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
            if not NOISE.match(text.strip()):
                prose.append(text)
            k += 1
            continue
        end = _code_end(lines, start)
        blocks.append(Block("python" if language in {"py", "python3"} else language, lines[start:end], prose))
        prose, k = [], end
    if prose:
        blocks.append(Block("", [], prose))  # the closing prose, kept in the reply
    return blocks


def _without_gutters(lines: list[Line]) -> list[Line]:
    """The lines without an editor's line-number gutter (Qwen's page copies `1`, `2`, ... `N` on lines of their
    own above a block's code) and its fold markers (`⌄`)."""
    out: list[Line] = []
    k = 0
    while k < len(lines):
        n = 0
        while k + n < len(lines) and lines[k + n][1].strip() == str(n + 1):
            n += 1
        if n and (not out or not out[-1][1].strip() or _LANG_TAG.match(out[-1][1].strip())):
            k += n  # a count from 1 right after a language line or a blank: a gutter, not content
            continue
        if lines[k][1].strip() != "⌄":
            out.append(lines[k])
        k += 1
    return out


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
    error = None if first else recorded_error(text)  # read as the replay's comparison reads it (loop.py)
    return {
        "kind": "prompt" if first else "traceback" if error else "other",
        "lines": [turn.lines[0][0], turn.lines[-1][0]],
        "error": error_text(error) if error else None,
        "text": text + "\n",
    }


def _fragment(code: str) -> bool:
    """A line or two that is not Python on its own (a signature quoted in prose): no file's code."""
    if len([line for line in code.splitlines() if line.strip()]) > 2:
        return False
    try:
        ast.parse(code)
    except SyntaxError:
        return True
    return False


def _kinds(code: str) -> list[str]:
    return [kind for kind, pattern in _KINDS.items() if pattern.search(code)]


def _read_reply(number: int, turn: Turn, current: dict[str, str], answering: str | None = None) -> dict[str, Any]:
    """One assistant turn -> its Markdown, reasoning and the files it carries; UsageError when code is unnamed.
    answering: the person's turn before it (a traceback's NameError places the import that fixes it)."""
    reasoning, body, notes = _take_reasoning(turn.lines)
    blocks = _segments(_without_gutters(body))
    parts: list[str] = []
    unplaced: list[str] = []
    guessed: dict[str, str] = {}
    other: list[dict[str, Any]] = []
    seen_code = False
    for block in blocks:
        parts.extend(block.gap)
        if not block.lines:
            continue
        parts.append(block.markdown())
        named = find_blocks("\n".join(block.gap) + "\n" + block.markdown())
        if not named:
            other.append({"language": block.language or "none", "lines": block.span})
            continue
        if seen_code and offered_instead(tuple(block.gap)):  # "Alternatively, ...": the replay applies the first
            other.append({"language": "alternative", "lines": block.span})
            continue
        seen_code = True
        for code in named:
            target = code.name or match_existing(code, current, answering)
            # in a fix, code that fits no current file is measured against an empty one: any `# ...` makes it a sketch
            if elides(code.code, current.get(target or "", "") if current else None):
                other.append({"language": "sketch", "lines": block.span})  # `# ...` stands for code it leaves out
            elif code.name is None and target is not None:
                guessed[target] = "definitions"  # it redefines functions or classes of that file: spliced in
            elif code.name is None and _fragment(code.code):  # e.g. `def forward(x):` quoted in reasoning prose
                other.append({"language": "fragment", "lines": block.span})
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
    try:
        merged = merge_reply(current, markdown, answering) if any(p.name for p in pieces) else dict(current)
    except NoCodeError:  # only sketches or alternatives: the replay applies nothing from this reply either
        merged = dict(current)
    # a piece that is only part of the file it fixes (a function, some imports) was spliced into it
    into = {i: name for i, p in enumerate(pieces) if (name := _spliced_into(p, current, answering))}
    spliced = sorted(set(into.values()))
    # a named piece the reply's own later code replaced (sketches and alternatives are listed as other blocks)
    superseded = [
        p.name
        for i, p in enumerate(pieces)
        if p.name
        and p.code not in merged.values()
        and i not in into
        and not p.alternative
        and not elides(p.code, current.get(p.name))
    ]
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


def import_chat(source: Path, out: Path, fmt: str = "auto", partial: bool = False) -> ImportResult:
    """Write a replay folder (NN.md, NN.reasoning.md, NN.user.md, import.json) from a pasted transcript; with
    partial, a reply whose code cannot be placed ends the folder there instead of failing the import."""
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
    stopped: dict[str, Any] | None = None
    for turn in turns:
        if turn.role == "user":
            before = turn
            continue
        try:
            answering = "\n".join(t for _, t in before.lines) if before is not None else None
            reply = _read_reply(len(replies) + 1, turn, current, answering)
        except UsageError as exc:
            if not partial or not replies:
                raise
            # the replay ends before this reply; the person's turn that it answered is the folder's trailing one
            stopped = {"reply": len(replies) + 1, "lines": [turn.lines[0][0], turn.lines[-1][0]], "reason": str(exc)}
            break
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
    result = ImportResult(out, fmt, records, trailing, stopped)
    manifest = {"source": str(source), **result.as_dict()}
    manifest.pop("folder")
    (out / "import.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return result


def _check_out(out: Path) -> None:
    """Refuse to mix two conversations in one folder: the replay reads every NN.md it finds."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose a new folder")


def _spliced_into(piece: CodeBlock, current: dict[str, str], answering: str | None) -> str | None:
    """The current file a block is only part of (so it was spliced in, not a replacement), or None."""
    name = piece.name or match_existing(piece, current, answering)
    return name if name is not None and name in current and is_partial(piece.code, current[name]) else None
