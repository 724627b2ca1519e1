"""What a job (generate, train, baseline) returns and prints last, as one JSON line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerateResult:
    """What `generate` prints last, as JSON."""

    run_id: str
    status: str
    errors_total: int
    heldout_dice_mean: float | None = None
    error: str | None = None  # the one-line reason of a harness_error

    def as_dict(self) -> dict[str, object]:
        """The JSON line's fields."""
        fields: dict[str, object] = {
            "run_id": self.run_id,
            "status": self.status,
            "errors_total": self.errors_total,
            "heldout_dice_mean": self.heldout_dice_mean,
        }
        if self.error:
            fields["error"] = self.error
        return fields
