"""The refine feedback: what a pipeline may legitimately know of its own run, as a message to its LLM.

Only the pipeline's own numbers enter it (curves, validation Dice, time, size, errors) and, when the user
allows, nnU-Net's validation Dice; the held-out split never does: `RoundResults` has no field for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from llmseg_mlflow.pipeline.prompt import render

FEEDBACK_NAME = "llmseg-refine-feedback"  # its name in the prompt registry
MAX_EPOCHS_SHOWN = 60  # longer curves are thinned to every k-th epoch (the last one always shown)


def feedback_path() -> Path:
    """The packaged llmseg_mlflow/prompts/refine_feedback.md."""
    return Path(__file__).resolve().parents[1] / "prompts" / "refine_feedback.md"


@dataclass(frozen=True)
class RoundResults:
    """What one round's pipeline reported about itself (its own training and validation split)."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_dice: list[float] = field(default_factory=list)
    train_time_s: float | None = None
    params_total: int | None = None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        """The round's validation Dice (last epoch): what picks the best round, never held-out Dice."""
        finite = [v for v in self.val_dice if math.isfinite(v)]
        return finite[-1] if finite else None


def _curve(values: list[float]) -> str:
    if not values:
        return "not reported"
    step = max(1, math.ceil(len(values) / MAX_EPOCHS_SHOWN))
    shown = sorted({*range(0, len(values), step), len(values) - 1})
    return ", ".join(f"{i + 1}: {values[i]:.4f}" for i in shown)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def render_feedback(
    template: str, results: RoundResults, round_number: int, baseline_val_dice: float | None = None, note: str = ""
) -> str:
    """The feedback message for round `round_number`, from the previous best round's own results."""
    errors = ", ".join(f"{kind} x{n}" for kind, n in sorted(results.errors.items())) or "none"
    baseline = (
        f"- nnU-Net v2, trained on the same training pool, reached a validation Dice of {baseline_val_dice:.4f}.\n"
        if baseline_val_dice is not None
        else ""
    )
    text = render(
        template,
        {
            "round": str(round_number),
            "train_time": _duration(results.train_time_s),
            "epochs": str(len(results.train_loss)) if results.train_loss else "not reported",
            "params": f"{results.params_total:,}" if results.params_total else "not measured",
            "errors": errors,
            "val_dice": _curve(results.val_dice),
            "train_loss": _curve(results.train_loss),
            "val_loss": _curve(results.val_loss),
            "baseline": baseline,
        },
    )
    return f"{note.strip()}\n\n{text}" if note.strip() else text
