"""Turn an LLM reply (Markdown with fenced code) into the pipeline's Python files."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace

from llmseg_mlflow.pipeline.errors import undefined_name
from llmseg_mlflow.pipeline.splice import elides, is_partial, parses, splice

CODE_FILES: tuple[str, ...] = ("dataset.py", "model.py", "train.py", "main.py")


class NoCodeError(Exception):
    """The reply holds no usable Python code for the expected files."""

    def __init__(self, statement: str, missing: tuple[str, ...] = ()) -> None:
        super().__init__(statement)
        self.statement = statement
        self.missing = missing

    def __str__(self) -> str:
        # str() is fed back to the LLM verbatim, so it carries the error type like a traceback line.
        return f"NoCodeError: {self.statement}"


@dataclass(frozen=True)
class CodeBlock:
    """One Python code block of a reply and the file it was assigned to."""

    name: str | None
    code: str
    language: str
    how: str  # "comment" | "fence" | "heading" | "content"
    alternative: bool = False  # the text before it offers it instead of the code above ("Alternatively, ...")


@dataclass(frozen=True)
class _Fenced:
    info: str
    body: str
    before: tuple[str, ...]  # the text lines between the previous fence and this one


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_PY_LANGS = {"python", "py", "python3", "py3", "ipython"}
_MD_LANGS = {"markdown", "md"}
_PY_NAME = re.compile(r"(?<![\w.])([A-Za-z0-9_][\w-]*\.py)(?!\w)")
_DECOR = r"[-=*#~_\s]*"
_FILE_WORDS = r"(?:(?:updated|fixed|corrected|revised|modified|complete|full)\s+)?(?:(?:file(?:name)?|path|save (?:this )?as)\s*[:\-]?\s*)?"
_PATH = r"`?(?:[\w.-]+[/\\])*(?P<name>[A-Za-z0-9_][\w-]*\.py)(?!\w)`?"
_HEAD_COMMENT = re.compile(rf"^#{_DECOR}{_FILE_WORDS}{_PATH}", re.I)
_MARKER = re.compile(rf"^#{_DECOR}{_FILE_WORDS}{_PATH}{_DECOR}$", re.I)
_HEADING = re.compile(r"^(?:#{1,6}\s|(?:[-*+]\s+|\d+[.)]\s+)?(\*\*|__).+\1:?$)")
_EMPHASIS = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*")
_PY_STATEMENT = re.compile(r"^\s*(?:import \w|from [\w.]+ import |(?:async\s+)?def \w+\s*\(|class \w+)", re.M)
_TOP_DEF = re.compile(r"^(?:async\s+)?(?:def|class)\s+(\w+)", re.M)
# The line before a block that offers it as another way to do what the code above it does.
_ALTERNATIVE = re.compile(r"^\W*(?:alternatively|alternate|alternative|another (?:option|approach|way))\b", re.I)


def _fenced_blocks(text: str) -> list[_Fenced]:
    """Split Markdown into fenced blocks, each with the text just before it."""
    lines = text.splitlines()
    found: list[_Fenced] = []
    gap: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):
            gap.append(lines[i])
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        body: list[str] = []
        i += 1
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            i += 1
            lead = len(line) - len(line.lstrip())
            if stripped.startswith(fence) and set(stripped) == {fence[0]} and lead <= indent + 3:
                break
            # A fence indented inside a list item indents its content too: remove that much.
            body.append(line[indent:] if not line[:indent].strip() else line)
        found.append(_Fenced(m["info"].strip(), "\n".join(body), tuple(gap)))
        gap = []
    return found


def _language(info: str) -> str:
    """The fence's language tag, lower case; a bare file name like model.py counts as python."""
    first = info.split()[0] if info.split() else ""
    if _PY_NAME.fullmatch(first.split(":")[-1].strip("`")):
        return "python"
    m = re.match(r"[{.]*([\w+#-]*)", info)
    return m.group(1).lower() if m else ""


def _is_python(language: str, code: str) -> bool:
    """Whether a block is Python code (not a shell command, tree or requirements list)."""
    if language and language not in _PY_LANGS:
        return False
    if _PY_STATEMENT.search(code):
        return True  # imports or definitions: Python, even when it does not parse
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    # A list of bare names (`torch`, `numpy==2.0`) parses too but is a requirements list.
    return any(not isinstance(node, ast.Expr) for node in tree.body)


def _normalize(name: str) -> str:
    """Expected files are matched case-insensitively; other names are kept as written."""
    return name.lower() if name.lower() in CODE_FILES else name


def _leading_comment_name(code: str) -> str | None:
    """File name from the block's first comment line (after shebang, coding and rulers)."""
    for line in code.splitlines():
        s = line.strip()
        if not s or s.startswith("#!") or re.match(r"#.*coding[:=]", s) or re.fullmatch(rf"#{_DECOR}", s):
            continue
        m = _HEAD_COMMENT.match(s)
        return _normalize(m["name"]) if m else None
    return None


def _imports_itself(name: str, rest: list[str]) -> bool:
    """Whether the code after a `# model.py` comment imports model: then it is a note, not a file start."""
    stem = re.escape(name[:-3])
    ends = [i for i, line in enumerate(rest) if _MARKER.match(line)]  # this section only
    code = "\n".join(rest[: ends[0] if ends else len(rest)])
    return re.search(rf"^\s*(?:from\s+\.?{stem}\s+import|import\s+{stem}\b)", code, re.M) is not None


def _split_markers(code: str) -> list[tuple[str | None, str]]:
    """Split a block that starts with a file-name comment at later `# --- x.py ---` marker lines."""
    first = _leading_comment_name(code)
    if first is None:
        return [(None, code)]
    parts: list[tuple[str | None, str]] = []
    lines = code.splitlines()
    start, name = 0, first
    seen_code = False
    for i, line in enumerate(lines):
        m = _MARKER.match(line)
        if m and seen_code and not _imports_itself(m["name"], lines[i + 1 :]):
            parts.append((name, "\n".join(lines[start:i])))
            start, name, seen_code = i, _normalize(m["name"]), False
        elif line.strip() and not line.startswith("#"):
            seen_code = True
    parts.append((name, "\n".join(lines[start:])))
    return parts


def _names_in(line: str) -> list[str]:
    """.py names in a line of text; emphasized ones (`x.py`, **x.py**) first when present."""
    emphasized = [n for m in _EMPHASIS.finditer(line) for n in _PY_NAME.findall(m.group(1) or m.group(2))]
    names = emphasized or _PY_NAME.findall(line)
    return list(dict.fromkeys(_normalize(n) for n in names))


def _names_from_text(before: tuple[str, ...]) -> list[str]:
    """Names from the nearest heading above a block, or from the last line of text before it."""
    lines = [line.strip() for line in before if line.strip()]
    for k, line in enumerate(reversed(lines)):
        heading = bool(_HEADING.match(line))
        if k == 0 or heading:
            names = _names_in(line)
            if names:
                return names
        if line.startswith("#"):
            return []  # a heading without a file name starts another section
    return []


def _guess_by_content(code: str) -> str | None:
    """The expected file a block most likely is, from what it defines."""
    modules = re.findall(r"^class\s+(\w+)\s*\([^)]*\bModule\s*\)", code, re.M)
    models = [c for c in modules if "loss" not in c.lower()]
    has_unet = any("unet" in c.lower() for c in models)
    is_dataset = re.search(r"^class\s+\w+\s*\([^)]*Dataset\s*\)", code, re.M) is not None
    trains = re.search(r"^(?:async\s+)?def\s+(?:train|valid|val_|evaluate|test)\w*\s*\(", code, re.M)
    has_loops = trains is not None and re.search(r"^\s+(?:for|while)\b", code, re.M) is not None
    guard = re.search(r"""^if\s+__name__\s*==\s*['"]__main__['"]""", code, re.M) is not None
    if guard and re.search(r"\bDataLoader\s*\(", code) and not is_dataset and not models:
        return "main.py"
    if is_dataset:
        return "dataset.py"
    if has_unet or (models and not has_loops):
        return "model.py"
    if has_loops:
        return "train.py"
    return "main.py" if guard else None


def offered_instead(before: tuple[str, ...]) -> bool:
    """Whether the text right before a block opens with "Alternatively", "Alternate option", "Another way"."""
    lines = [line.strip() for line in before if line.strip()]
    return bool(lines) and _ALTERNATIVE.match(lines[-1]) is not None


def _name_block(comment: str | None, code: str, fenced: _Fenced, language: str) -> CodeBlock:
    """Name one block by comment, then fence info, then the text before it, then its content."""
    if comment:
        return CodeBlock(comment, code, language, "comment")
    fence_names = _PY_NAME.findall(fenced.info)
    if fence_names:
        return CodeBlock(_normalize(fence_names[-1]), code, language, "fence")
    names = _names_from_text(fenced.before)
    guess = _guess_by_content(code)
    if names:
        return CodeBlock(guess if guess in names else names[0], code, language, "heading")
    return CodeBlock(guess, code, language, "content")


def find_blocks(reply: str) -> list[CodeBlock]:
    """All Python code blocks of a Markdown reply, in order, each named where possible."""
    blocks: list[CodeBlock] = []
    for fenced in _fenced_blocks(reply):
        language = _language(fenced.info)
        if language in _MD_LANGS:
            blocks.extend(find_blocks(fenced.body))  # a whole answer wrapped in ```markdown
            continue
        body = fenced.body.strip("\n")
        if not _is_python(language, body):
            continue
        alternative = bool(blocks) and offered_instead(fenced.before)
        for comment, code in _split_markers(body):
            block = _name_block(comment, code.strip("\n") + "\n", fenced, language)
            blocks.append(replace(block, alternative=alternative))
    return blocks


def _top_level_names(code: str) -> set[str]:
    """Names of the module-level functions and classes a piece of code defines."""
    return set(_TOP_DEF.findall(code))


def _imports(code: str) -> tuple[set[str], bool]:
    """A block's import statements (each as ast.unparse writes it), and whether it holds nothing else."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):
        return set(), False
    nodes = [node for node in body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return {ast.unparse(node) for node in nodes}, bool(body) and len(nodes) == len(body)


def _binds(statement: str, name: str) -> bool:
    """Whether an import statement (as ast.unparse writes it) binds name."""
    node = ast.parse(statement).body[0]
    assert isinstance(node, (ast.Import, ast.ImportFrom))
    return any((a.asname or a.name).split(".")[0] == name for a in node.names)


def _match_imports(imports: set[str], current: dict[str, str]) -> str | None:
    """The one current file that already has most of a block's imports (at least half): the block quotes or
    extends that file's import lines. None when no file does, or two do equally."""
    overlaps = sorted(((len(imports & _imports(code)[0]), name) for name, code in current.items()), reverse=True)
    if not overlaps or 2 * overlaps[0][0] < len(imports) or (len(overlaps) > 1 and overlaps[1][0] == overlaps[0][0]):
        return None
    return overlaps[0][1]


def match_existing(block: CodeBlock, current: dict[str, str], answering: str | None = None) -> str | None:
    """The current file that defines most of the same top-level names as an unnamed block; for a block of
    imports only, the file whose NameError it answers (answering: the traceback), else the one file that
    already has most of them."""
    names = _top_level_names(block.code)
    if not names:
        imports, only = _imports(block.code)
        if only:
            missing = undefined_name(answering or "", frozenset(current))
            if missing and any(_binds(line, missing[1]) for line in imports):
                return missing[0]  # "import torch.nn.functional as F" for the F that train.py lacked
            return _match_imports(imports, current)
        # statements from inside a function ("the split in main() should be:"): the one file they fit
        fits = [name for name, code in current.items() if is_partial(block.code, code)]
        return fits[0] if len(fits) == 1 else None
    best, best_overlap = None, 0
    for name, code in current.items():
        overlap = len(names & _top_level_names(code))
        if overlap > best_overlap or (overlap == best_overlap and overlap and name == block.name):
            best, best_overlap = name, overlap
    return best


def _assign(blocks: list[CodeBlock], current: dict[str, str], answering: str | None = None) -> dict[str, str]:
    """Files from blocks: named blocks first (last wins), unnamed ones fill the rest, replace a named sketch
    that does not parse, or, when only part of a file a named block changed, are spliced into it too; a block
    that is only part of a current file (a function, some imports) is spliced into it, as a person would. A
    sketch (`# ...` for code it leaves out) and an alternative offered after other code are not applied."""

    def put(files: dict[str, str], name: str, code: str) -> None:
        base = files.get(name, current.get(name))
        if elides(code, base):
            return  # pasting it would lose the code it leaves out; the person asks for it whole
        files[name] = splice(code, base) if base is not None and is_partial(code, base) else code

    blocks = [block for block in blocks if not block.alternative]
    files: dict[str, str] = {}
    for block in blocks:
        if block.how != "content" and block.name:
            put(files, block.name, block.code)
    guessed: dict[str, str] = {}
    for block in blocks:
        if block.how == "content":
            target = match_existing(block, current, answering) or block.name
            if not target:
                continue
            if target not in files:
                put(guessed, target, block.code)
            elif not parses(files[target]) and parses(block.code):
                # what was named is a sketch (`def __init__(self, ...):`, quoted in undelimited reasoning as
                # Grok 3 mini's page shows it); the real code comes after it
                del files[target]
                put(files, target, block.code)
            elif is_partial(block.code, files[target]):
                put(files, target, block.code)  # one more piece of a file a named block changed (GPT-4o's fixes)
    return {**files, **guessed}


def _no_code(blocks: list[CodeBlock]) -> NoCodeError:
    expected = ", ".join(CODE_FILES)
    if not blocks:
        return NoCodeError(f"the reply contains no Python code block for {expected}")
    if any(elides(block.code) for block in blocks):
        return NoCodeError(
            "the reply's code leaves parts out ('# ...' in a function stands for code it does not show); "
            "send each file or function you change whole"
        )
    return NoCodeError(f"the reply's code blocks do not say which of {expected} they are")


def extract_files(reply: str) -> dict[str, str]:
    """First reply -> the four files (and extras); NoCodeError if any is missing."""
    blocks = find_blocks(reply)
    files = _assign(blocks, {})
    if not files:
        raise _no_code(blocks)
    missing = tuple(sorted(n for n in CODE_FILES if n not in files))
    if missing:
        raise NoCodeError(f"the reply is missing {', '.join(missing)}", missing)
    return files


def merge_reply(current: dict[str, str], reply: str, answering: str | None = None) -> dict[str, str]:
    """Fix reply -> current files with the resent ones replaced; answering is the traceback the reply answers."""
    blocks = find_blocks(reply)
    updates = _assign(blocks, current, answering)
    if not updates:
        raise _no_code(blocks)
    return {**current, **updates}
