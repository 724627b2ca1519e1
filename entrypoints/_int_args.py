"""MLproject passes numbers as floats ("1.0"); the CLI wants integers."""

from __future__ import annotations

INT_OPTIONS = {"--repeat", "--epochs", "--max-batches", "--max-fix-rounds", "--stuck-after", "--iterations"}


def normalise(argv: list[str]) -> list[str]:
    """Turn "--epochs 2.0" into "--epochs 2" for the integer options."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in INT_OPTIONS:
            out[i + 1] = str(int(float(out[i + 1])))
    return out
