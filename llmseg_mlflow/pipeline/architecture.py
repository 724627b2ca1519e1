"""What the LLM built, read from its printed torchinfo summary and its model.py."""

from __future__ import annotations

import ast
import re

_TOTAL = re.compile(r"^\s*Total params:?\s*([\d,]+)", re.MULTILINE)
_TRAINABLE = re.compile(r"(?:Trainable params|trainable parameters)\D{0,20}([\d,]{2,})", re.IGNORECASE)
_RULE = re.compile(r"^=+$")


def torchinfo_summary(stdout: str) -> str | None:
    """The torchinfo table printed by the pipeline (from its first '=====' rule to the last), if any."""
    lines = [line.rsplit("\r", 1)[-1] for line in stdout.splitlines()]
    header = next((i for i, line in enumerate(lines) if "Layer (type" in line), None)
    if header is None:
        return None
    start = header - 1 if header > 0 and _RULE.match(lines[header - 1].strip()) else header
    end = start
    for i in range(header, len(lines)):
        if _RULE.match(lines[i].strip()):
            end = i
        elif lines[i].strip() == "" and end > header and i > end:
            break
    return "\n".join(lines[start : end + 1])


def params_total(stdout: str) -> int | None:
    """Total parameter count as printed by torchinfo (or the pipeline's own 'trainable params' line)."""
    match = _TOTAL.search(stdout) or _TRAINABLE.search(stdout)
    return int(match.group(1).replace(",", "")) if match else None


def final_activation(model_source: str) -> str:
    """'sigmoid' when the model applies a sigmoid/softmax itself, else 'none' (it returns logits)."""
    try:
        tree = ast.parse(model_source)
    except SyntaxError:
        return "unknown"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.lower() in ("sigmoid", "softmax"):
                return name.lower()
    return "none"
