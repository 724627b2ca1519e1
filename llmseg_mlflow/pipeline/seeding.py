"""Whether generated code seeds its own random generators (then its seed wins over the harness's)."""

from __future__ import annotations

import ast

# Calls that fix a generator's seed, by their last two name parts (np.random.seed, torch.manual_seed, ...).
SEED_CALLS = {
    ("random", "seed"),
    ("torch", "manual_seed"),
    ("cuda", "manual_seed"),
    ("cuda", "manual_seed_all"),
    ("", "manual_seed"),
    ("", "seed_everything"),
    ("", "set_seed"),
    ("", "default_rng"),
}


def _dotted(node: ast.expr) -> list[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def seed_calls(files: dict[str, str]) -> list[str]:
    """Each seeding call in the code as `file:line call(args)`, in file order; [] when it seeds nothing."""
    found: list[tuple[str, int, str]] = []
    for name, text in sorted(files.items()):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            parts = _dotted(node.func)
            if not parts:
                continue
            last, owner = parts[-1], parts[-2] if len(parts) > 1 else ""
            if (owner, last) in SEED_CALLS or ("", last) in SEED_CALLS:
                if last == "default_rng" and not node.args:
                    continue  # an unseeded generator
                found.append((name, node.lineno, ast.unparse(node)[:80]))
    return [f"{name}:{line} {call}" for name, line, call in sorted(found)]
