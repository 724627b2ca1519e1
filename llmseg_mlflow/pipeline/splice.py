"""A fix that resends part of a file: "replace `visualize_predictions` in train.py with this", or "the top of
main.py should look like this". A person pastes such a snippet into the file; taking it as the whole file
would run a train.py that is one function long. `splice` does what the person would do, by the syntax tree.
"""

from __future__ import annotations

import ast

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORTS = (ast.Import, ast.ImportFrom)


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
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.setdefault(node.name, []).append(node)
    return found


def is_partial(snippet: str, current: str) -> bool:
    """Whether snippet is part of current rather than all of it: only imports and definitions of names current
    already defines (at module level, or as the method of one class), while current defines others too."""
    new, old = _parse(snippet), _parse(current)
    if new is None or old is None or not new.body:
        return False
    if any(not isinstance(n, (*_DEFS, *_IMPORTS)) and not _is_docstring(n) for n in new.body):
        return False  # module-level code (a main block, constants): a whole file, as the reply says
    if all(isinstance(n, _IMPORTS) for n in new.body):
        # "the top of main.py": imports alone belong to a file that holds more, functions or a bare main block
        return any(not isinstance(n, _IMPORTS) and not _is_docstring(n) for n in old.body)
    defs = {n.name for n in new.body if isinstance(n, _DEFS)}
    have = {n.name for n in old.body if isinstance(n, _DEFS)}
    methods = {name for name, nodes in _methods(old).items() if len(nodes) == 1 and name not in have}
    return defs <= have | methods and bool(have - defs)


def splice(snippet: str, current: str) -> str:
    """current with the snippet's definitions in place of its own of the same name and the snippet's imports
    that it lacks added after its last import; call only where `is_partial` holds."""
    new, old = _parse(snippet), _parse(current)
    assert new is not None and old is not None
    lines, code = current.splitlines(), snippet.splitlines()
    replaced = {n.name: n for n in new.body if isinstance(n, _DEFS)}
    edits: list[tuple[int, int, list[str]]] = []  # (start, end, new lines) on current, applied bottom-up
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
