"""A fix that resends part of a file: "replace `visualize_predictions` in train.py with this", or "the top of
main.py should look like this". A person pastes such a snippet into the file; taking it as the whole file
would run a train.py that is one function long. `splice` does what the person would do, by the syntax tree.
"""

from __future__ import annotations

import ast
import builtins
import re

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DEFS = (*_FUNCTIONS, ast.ClassDef)
_IMPORTS = (ast.Import, ast.ImportFrom)
# A comment standing in for code the reply does not show: `# ...`, `# ... (Encoder remains the same)`,
# `# [rest of the train.py code remains the same]`.
_ELISION = re.compile(
    r"^\s*#\s*(?:\.\.\.|…|\W*(?:the\s+)?(?:rest|remainder)\s+of\b|.*\b(?:remains?|stays?)\s+(?:the\s+same|unchanged)\b"
    r"|.*\bsame as (?:before|above)\b|\W*(?:previous|existing|other)\s+code\b)",
    re.I,
)


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def parses(code: str) -> bool:
    """Whether the code is valid Python (a sketch such as `def __init__(self, ...):` is not)."""
    return _parse(code) is not None


def _span(node: ast.stmt) -> tuple[int, int]:
    """0-based first and one-past-last line of a statement, its decorators included."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return first - 1, node.end_lineno or node.lineno


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _methods(tree: ast.Module) -> dict[str, list[ast.stmt]]:
    """Method name -> its definitions in the module's classes (a method resent alone replaces its one namesake)."""
    found: dict[str, list[ast.stmt]] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for node in cls.body:
            if isinstance(node, _FUNCTIONS):
                found.setdefault(node.name, []).append(node)
    return found


def elides(snippet: str, current: str | None = None) -> bool:
    """Whether snippet is a sketch that leaves code out: an elision comment (`# ...`) inside a definition, whose
    code would replace the whole definition, or anywhere in code that would replace all of current."""
    marks = [line for line in snippet.splitlines() if _ELISION.match(line)]
    if any(line[:1].isspace() for line in marks):
        return True
    return bool(marks) and current is not None and not is_partial(snippet, current)


def _statements(tree: ast.Module) -> list[ast.stmt]:
    """A module's statements that are neither definitions, imports nor its docstring."""
    return [n for n in tree.body if not isinstance(n, (*_DEFS, *_IMPORTS)) and not _is_docstring(n)]


def is_partial(snippet: str, current: str) -> bool:
    """Whether snippet is part of current rather than all of it: imports and definitions of names current
    already defines (at module level, or as the method of one class), while current defines others too, and
    any statements stand for statements inside one of its functions (`_anchors`)."""
    new, old = _parse(snippet), _parse(current)
    if new is None or old is None or not new.body:
        return False
    statements = _statements(new)
    if statements and _anchors(new, old, _comments(snippet)) is None:
        return False  # module-level code (a main block, constants): a whole file, as the reply says
    defs = {n.name for n in new.body if isinstance(n, _DEFS)}
    if not defs:
        # "the top of main.py": imports alone belong to a file that holds more, functions or a bare main block
        return bool(statements) or any(not isinstance(n, _IMPORTS) and not _is_docstring(n) for n in old.body)
    have = {n.name for n in old.body if isinstance(n, _DEFS)}
    methods = {name for name, nodes in _methods(old).items() if len(nodes) == 1 and name not in have}
    return defs <= have | methods and bool(have - defs)


def _bodies(tree: ast.AST) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, list[ast.stmt]]]:
    """Every statement list inside the functions of a module (their bodies and the blocks nested in them), each
    with its function."""
    found: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, list[ast.stmt]]] = []
    for func in (n for n in ast.walk(tree) if isinstance(n, _FUNCTIONS)):
        for node in ast.walk(func):
            for field in ("body", "orelse", "finalbody"):
                block = getattr(node, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    found.append((func, block))
    return found


def _bound(node: ast.AST) -> set[str]:
    """Names a piece of code binds: assignments, loop and `with` targets, imports, definitions, parameters."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    names |= {
        a.arg for n in ast.walk(node) if isinstance(n, ast.arguments) for a in ast.walk(n) if isinstance(a, ast.arg)
    }
    names |= {n.name for n in ast.walk(node) if isinstance(n, _DEFS)}
    names |= {(a.asname or a.name).split(".")[0] for n in ast.walk(node) if isinstance(n, _IMPORTS) for a in n.names}
    return names


def _reads_only_known(snippet: ast.Module, func: ast.AST, module: ast.Module) -> bool:
    """Whether the snippet reads only names the function or its module bind (or it binds or imports itself): a
    suggestion that reads `batch` where the loop has no such name is an example, not this function's code."""
    known = _bound(func) | {n for stmt in module.body if not isinstance(stmt, _DEFS) for n in _bound(stmt)}
    known |= {n.name for n in module.body if isinstance(n, _DEFS)} | set(dir(builtins)) | _bound(snippet)
    read = {n.id for n in ast.walk(snippet) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return read <= known


def _named_in(function: str, comments: str) -> bool:
    """Whether the snippet's comments name the function ("# ... inside your training loop" names `train`)."""
    return any(len(word) >= 4 and word[:5] in comments for word in function.lower().split("_"))


def _same(new: ast.stmt, old: ast.stmt) -> bool:
    """One statement stands for the other: it assigns the same targets, calls the same function as a statement
    ("in main() call it like this: summary(model, device)"), or is the same statement."""
    if isinstance(new, ast.Assign) and isinstance(old, ast.Assign):
        return [ast.dump(t) for t in new.targets] == [ast.dump(t) for t in old.targets]
    calls = [n.value.func for n in (new, old) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    if len(calls) == 2:
        return ast.dump(calls[0]) == ast.dump(calls[1])
    return ast.dump(new) == ast.dump(old)


def _anchors(new: ast.Module, old: ast.Module, comments: str = "") -> tuple[ast.stmt, ast.stmt] | None:
    """For bare statements quoted from a function ("change the split in main() to this"), the first and last
    statement of the one function block they stand for: each with at most one counterpart there, in order, and
    at least one, reading no name the function lacks; where several blocks fit (a training and a validation
    loop), the one whose function the snippet's comments name. None for a snippet with a main guard, one that
    matches nowhere, or ambiguously."""
    statements = _statements(new)
    if not statements or any(isinstance(n, ast.If) for n in statements):
        return None  # an `if` may be the main guard of a whole script
    found = []
    for func, block in _bodies(old):
        matches = [[o for o in block if _same(stmt, o)] for stmt in statements]
        pairs = [m[0] for m in matches if len(m) == 1]
        if pairs and all(len(m) <= 1 for m in matches) and pairs == sorted(pairs, key=lambda n: n.lineno):
            if _reads_only_known(new, func, old):
                found.append((func.name, (pairs[0], pairs[-1])))
    if len(found) > 1:
        found = [f for f in found if _named_in(f[0], comments)]
    return found[0][1] if len(found) == 1 else None


def _comments(snippet: str) -> str:
    """The snippet's comment text, lower case, for `_anchors` to tell which function it quotes."""
    return " ".join(line.strip().lower() for line in snippet.splitlines() if line.strip().startswith("#"))


def splice(snippet: str, current: str) -> str:
    """current with the snippet's definitions in place of its own of the same name (or its statements in place
    of the ones they stand for) and the snippet's imports that it lacks added after its last import; call only
    where `is_partial` holds."""
    new, old = _parse(snippet), _parse(current)
    assert new is not None and old is not None
    lines, code = current.splitlines(), snippet.splitlines()
    replaced = {n.name: n for n in new.body if isinstance(n, _DEFS)}
    edits: list[tuple[int, int, list[str]]] = []  # (start, end, new lines) on current, applied bottom-up
    statements = _statements(new)
    if statements and (anchors := _anchors(new, old, _comments(snippet))) is not None:
        # the statements' lines, with the blanks and comments between them, less any definition among them
        others = {i for n in new.body if n not in statements for i in range(*_span(n))}
        body = [
            line
            for i, line in enumerate(code)
            if _span(statements[0])[0] <= i < _span(statements[-1])[1] and i not in others
        ]
        pad = " " * anchors[0].col_offset  # the statements were quoted flush left; they sit in a function
        edits.append(
            (_span(anchors[0])[0], _span(anchors[1])[1], [pad + line if line.strip() else line for line in body])
        )
    for node in old.body:
        if isinstance(node, _DEFS) and node.name in replaced:
            start, end = _span(replaced.pop(node.name))
            edits.append((*_span(node), code[start:end]))
    for name, (method,) in ((n, m) for n, m in _methods(old).items() if n in replaced and len(m) == 1):
        start, end = _span(replaced.pop(name))
        pad = " " * method.col_offset  # the snippet was written at module level; the method sits in its class
        edits.append((*_span(method), [pad + line if line.strip() else line for line in code[start:end]]))
    have = {ast.unparse(n) for n in old.body if isinstance(n, _IMPORTS)}
    added = [ast.unparse(n) for n in new.body if isinstance(n, _IMPORTS) and ast.unparse(n) not in have]
    if added:
        last = max((_span(n)[1] for n in old.body if isinstance(n, _IMPORTS)), default=0)
        edits.append((last, last, added))
    for start, end, text in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[start:end] = text
    return "\n".join(lines) + "\n"
