"""MLproject has no integers, flags or optional parameters: turn the argv it builds into the CLI's.

An empty value means "not given" (the CLI's default applies: the one copy in llmseg_mlflow/config.py),
so does a negative integer; numbers arrive as floats ("2.0"); flags arrive as true/false.
"""

from __future__ import annotations

INT_OPTIONS = {
    "--repeat",
    "--epochs",
    "--max-batches",
    "--max-fix-rounds",
    "--stuck-after",
    "--iterations",
    "--workers",
    "--seeds",
    "--rounds",
}
FLAG_OPTIONS = {"--bonferroni", "--dry-run", "--show-baseline"}


def normalise(argv: list[str]) -> list[str]:
    """`--epochs 2.0` -> `--epochs 2`; `--dry-run true` -> `--dry-run`; empty values and `-1` dropped."""
    out: list[str] = []
    for opt, raw in zip(argv[::2], argv[1::2], strict=True):
        value = raw.strip()
        if opt in FLAG_OPTIONS:
            out += [opt] if value.lower() in ("true", "1", "yes") else []
        elif opt in INT_OPTIONS and value:
            number = int(float(value))
            out += [opt, str(number)] if number >= 0 else []
        elif value:
            out += [opt, value]
    return out
