"""The typed configuration layer: one pydantic base for every YAML schema and job config, and its error messages.

Each schema lives beside the code that uses it (datasets in catalog/datasets.py, a study in
sweep/study.py, ...); what they share is here: strict fields (YAML's `true` is not a number, `"3"`
is not an int), unknown keys refused with a suggestion, and ValidationErrors rewritten as
"where: what was expected, got what" lines a user can act on. Job defaults live once, here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

# Job limits: the paper's pipelines trained for minutes to hours; these bound one execution.
JOB_TIMEOUT_S = 3 * 3600.0
JOB_MEMORY_GB = 16.0
EVAL_TIMEOUT_S = 1800.0  # `llmseg evaluate` on its own; inside a job it follows the job's timeout


class Strict(BaseModel):
    """Base of every schema: frozen, strict types, unknown keys refused by name with a suggestion."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = field_names(cls)
            for key in data:
                if key not in allowed:
                    raise ValueError(
                        f"unknown field {key!r}{suggest(str(key), allowed)}; allowed: {', '.join(allowed)}"
                    )
        return data


def field_names(model: type[BaseModel]) -> list[str]:
    """The keys a YAML mapping may use for this model (aliases where set)."""
    return [f.alias or name for name, f in model.model_fields.items()]


def default_of(model: type[BaseModel], name: str) -> Any:
    """The one default of a field, for a CLI option or another schema that shows it."""
    return model.model_fields[name].get_default(call_default_factory=True)


def suggest(name: str, known: Iterable[str]) -> str:
    """' (did you mean a, b?)' for close matches, else ''."""
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "path_type": "a path",
}


def where(loc: Sequence[int | str], prefix: str = "") -> str:
    """('models', 0, 'year') -> 'models[0].year'."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "top level"


def _problem(err: Any) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "assertion_error":
        return err["msg"].removeprefix("Assertion failed, ")
    if kind == "missing":
        return "missing (required)"
    if kind == "literal_error":
        return f"got {got!r}, allowed values: {str(ctx.get('expected', '')).replace(chr(39), '')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "")
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        return f"expected a number {op} {bound}, got {got!r}"
    if kind in ("too_short", "too_long"):
        return f"expected {err['msg'].split('should have ')[-1]}, got {got!r}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {got!r}"
    return f"{err['msg']}, got {got!r}"


def problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """One 'where: what is wrong' line per error; union branches that only restate a type error are merged."""
    lines: list[str] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        # A union reports every branch; the location without the branch name is what the user wrote.
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _BRANCH_NAMES))]
        place = where(loc, prefix)
        if place in seen:
            continue
        seen.add(place)
        lines.append(f"{place}: {_problem(err)}")
    return lines


# Names pydantic gives union branches in a location (skipped when we print where the problem is).
_BRANCH_NAMES = {"str", "int", "float", "bool", "list", "dict", "tuple", "function-after", "function-before"}


def describe(exc: ValidationError, heading: str, prefix: str = "") -> str:
    """A heading, then every problem on its own indented line."""
    lines = problems(exc, prefix)
    return f"{heading} has {len(lines)} problem(s):\n" + "\n".join(f"  {line}" for line in lines)
