"""Where run-to-run variability comes from: new code (regenerations) or new training of the same code (seeds).

The paper's repeats (Tables 4-5) ask the model again, so their spread mixes two sources: the code differs,
and one code trains differently each time. Seeded retrainings (`llmseg train --seeds K`, a study's
`seeds:` entry) measure the second alone; with repeats as the total, the first is what remains:
var(regenerations) = var(code) + var(training), so var(code) = max(0, var(regenerations) - var(training)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llmseg_mlflow.analysis.table import PIPELINE, SEED, StudyData

if TYPE_CHECKING:  # build.py imports this module: the type alone, no import cycle at run time
    from llmseg_mlflow.analysis.build import Context

MIN_N = 2  # a variance needs two values
COLUMNS = [
    "model",
    "dataset",
    "n_regenerations",
    "sd_regenerations",
    "n_seeded_codes",
    "n_trainings",
    "sd_trainings",
    "sd_code",
    "share_from_code",
    "note",
]


def _scores(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[np.isfinite(frame.heldout_dice_mean.astype(float))]


def variance_sources(data: StudyData) -> pd.DataFrame:
    """Per model and dataset: SD of held-out Dice between regenerations, between trainings, and the code's share."""
    roots = data.pipelines
    if "heldout_dice_mean" not in roots:
        return pd.DataFrame(columns=COLUMNS)
    repeats = _scores(roots[roots.role == PIPELINE])
    seeded = _scores(roots[roots.role == SEED])
    # The source pipeline a seed root retrained is itself a training of that code (its own seed unknown).
    sources = repeats[repeats.run_id.isin(set(seeded.source_run))].assign(source_run=lambda f: f.run_id)
    trainings = pd.concat([seeded, sources])
    rows = []
    for (model, dataset), regen in repeats.groupby(["model", "dataset"]):
        mine = trainings[(trainings.model == model) & (trainings.dataset == dataset)]
        per_code = [g.heldout_dice_mean.astype(float).to_numpy() for _, g in mine.groupby("source_run")]
        per_code = [x for x in per_code if len(x) >= MIN_N]
        # Pooled within-code variance: each code's variance weighted by its degrees of freedom.
        dof = sum(len(x) - 1 for x in per_code)
        var_train = sum(float(np.var(x, ddof=1)) * (len(x) - 1) for x in per_code) / dof if dof else np.nan
        values = regen.heldout_dice_mean.astype(float).to_numpy()
        var_regen = float(np.var(values, ddof=1)) if len(values) >= MIN_N else np.nan
        notes = []
        if len(values) < MIN_N:
            notes.append(f"n too small: {len(values)} regeneration(s), a variance needs {MIN_N}")
        if not per_code:
            notes.append(f"n too small: no code trained at least {MIN_N} times (add seeds: to the study)")
        var_code = max(0.0, var_regen - var_train) if not notes else np.nan
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "n_regenerations": len(values),
                "sd_regenerations": np.sqrt(var_regen),
                "n_seeded_codes": len(per_code),
                "n_trainings": int(sum(len(x) for x in per_code)),
                "sd_trainings": np.sqrt(var_train),
                "sd_code": np.sqrt(var_code),
                "share_from_code": var_code / var_regen if not notes and var_regen > 0 else np.nan,
                "note": "; ".join(notes),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def section_variance(c: Context) -> None:
    """The variability section's split of the run-to-run spread into code and training."""
    if not (c.data.pipelines.role == SEED).any():
        c.out.section_notes.setdefault("variability", []).append(
            "No seeded retrainings in this study: run-to-run variability is not split into code and training "
            "(add `seeds: {count: 3}` to the study, or `llmseg train --run-id R --seeds 3`)."
        )
        return
    c.out.table(
        "variance_sources",
        "Run-to-run variability split: between regenerations of the code vs between trainings of the same code",
        "variability",
        variance_sources(c.data),
        "SD of mean held-out Dice. sd_regenerations: over the repeats (new code each time); sd_trainings: pooled "
        "within-code SD over seeded retrainings of the same final code (the source pipeline counts as one "
        "training); sd_code = sqrt(max(0, var_regenerations - var_trainings)); share_from_code = var_code / "
        "var_regenerations.",
    )
