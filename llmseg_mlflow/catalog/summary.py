"""What a preparation did: counts, what it left out and why, and the variants of the source it met."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Skipped:
    """Things left out for one reason: how many, and a few of them by name."""

    reason: str
    count: int
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrepareSummary:
    """The report of one preparation, kept in the manifest and printed by the CLI."""

    source: str
    source_format: str
    units: int
    candidates: int
    prepared: int
    n_pool: int
    n_heldout: int
    split_by: str
    patients_pool: int
    patients_heldout: int
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = ()
    image_modes: tuple[tuple[str, int], ...] = ()

    def lines(self) -> list[str]:
        """Human-readable lines: what was found, prepared, left out and noticed."""
        unit = "volume pair(s)" if self.source_format == "nifti" else "image/mask pair(s)"
        found = f"found {self.units} {unit}"
        if self.source_format == "nifti":
            found += f" with {self.candidates} slice(s) holding the foreground"
        out = [
            f"source: {self.source}",
            f"{found}; prepared {self.prepared}: {self.n_pool} pool, {self.n_heldout} held-out",
        ]
        if self.split_by == "patient" and self.patients_pool + self.patients_heldout < self.prepared:
            out.append(
                f"split by patient: {self.patients_pool} patient(s) in the pool, {self.patients_heldout} held out, none on both sides"
            )
        elif self.split_by == "slice" and self.patients_pool + self.patients_heldout < self.prepared:
            out.append("split by slice (as the paper did): a patient's slices can be on both sides")
        if self.image_modes:
            out.append("image modes: " + ", ".join(f"{mode} {n}" for mode, n in self.image_modes))
        if self.skipped:
            out.append("left out:")
            for item in self.skipped:
                example = f" (e.g. {', '.join(item.examples)})" if item.examples else ""
                out.append(f"  {item.count} {item.reason}{example}")
        else:
            out.append("left out: nothing")
        out += [f"note: {note}" for note in self.notes]
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrepareSummary:
        """The summary stored in a manifest."""
        return cls(
            **{
                **data,
                "skipped": tuple(
                    Skipped(s["reason"], s["count"], tuple(s.get("examples", ()))) for s in data.get("skipped", ())
                ),
                "notes": tuple(data.get("notes", ())),
                "image_modes": tuple((m, n) for m, n in data.get("image_modes", ())),
            }
        )
