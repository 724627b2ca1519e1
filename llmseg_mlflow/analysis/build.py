"""Every table and figure of the report, section by section, from the tidy study."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from llmseg_mlflow.analysis import figures as fg
from llmseg_mlflow.analysis import qualitative as ql
from llmseg_mlflow.analysis import tables as tb
from llmseg_mlflow.analysis.cache import RunCache
from llmseg_mlflow.analysis.cohort_ci import section_cohorts
from llmseg_mlflow.analysis.config import AnalyzeConfig, Cohorts
from llmseg_mlflow.analysis.efficiency import section_efficiency
from llmseg_mlflow.analysis.memo import SectionMemo
from llmseg_mlflow.analysis.outputs import Outputs
from llmseg_mlflow.analysis.paired import section_paired
from llmseg_mlflow.analysis.ranking import section_ranking
from llmseg_mlflow.analysis.recorded import section_recorded
from llmseg_mlflow.analysis.refinement import section_refinement
from llmseg_mlflow.analysis.stats import in_group, variability_test
from llmseg_mlflow.analysis.study_model import section_study_model
from llmseg_mlflow.analysis.table import BASELINE, StudyData
from llmseg_mlflow.analysis.variance import section_variance
from llmseg_mlflow.catalog.datasets import load_datasets
from llmseg_mlflow.catalog.prepared import MANIFEST

RULES = [
    "Pipelines that never ran (status gave_up, no_code, failed_training or harness_error, or no held-out "
    "evaluation) count in the error, fix-round and cost tables and are listed under 'Pipelines without held-out "
    "Dice'; they have no Dice, so they are left out of Dice plots and tests, and every test row says how many "
    "were left out (left_out_a, left_out_b).",
    "Spread: every \u00b1 and every shaded band is the sample standard deviation (SD, ddof=1), never the standard "
    "error (SEM); boxes show the median and IQR, whiskers 1.5 IQR.",
    "Cohort tests (Table 3): one-sided Mann-Whitney U (scipy.stats.mannwhitneyu, automatic method) of 'group b "
    "scores higher than group a' on per-model mean held-out Dice (a model's mean over its pipelines on that "
    "dataset, repeats averaged); U is group b's statistic; effect size is the rank-biserial r = 2U/(n_a n_b) - 1 "
    "(+1: every b model beats every a model). Medians (IQR) pool every per-image score of the group's pipelines. "
    "Significant means p < alpha, or with --bonferroni p x m < alpha (m = the number of tests in the table). "
    "Each row adds 95% percentile bootstrap CIs (seeded; the group's models resampled, the test's unit) of both "
    "medians, of their delta and of the effect size (rank-biserial r, equal to Cliff's delta, also given), and "
    "Holm (p_holm) and Benjamini-Hochberg (p_bh) adjusted p over the family of the table's tests that ran "
    "(datasets x comparisons; not the paired or run-to-run tests). A group of fewer than 3 models gets no CI.",
    "Ranking stability: per dataset, the held-out images every model scored are bootstrapped (the same images "
    "for every model), each model's median Dice (repeats pooled) recomputed and the models ranked; the tables "
    "give how often each model keeps its rank, is at each rank and scores above each other model. Fewer than 6 "
    "such images or a single model: no bootstrap ('n too small').",
    "The nnU-Net baseline (tag baseline=true) is drawn on top of plots and is in no cohort and no test; "
    "forced-budget reruns (tag budget) appear only in the constant-budget section; roots a sweep retried "
    "(tag superseded_by) are ignored.",
    "Paired comparison with nnU-Net: per held-out image, the LLM pipeline's Dice minus nnU-Net's on the same "
    "image (model rows average repeats per image, cohort rows average models); two-sided Wilcoxon signed-rank "
    "test (scipy.stats.wilcoxon), 95% percentile bootstrap CI of the median difference (2000 resamples, seeded), "
    "share of images won; rows with fewer than 6 pairs get no test ('n too small').",
    "Validation-loss plots put every curve (baseline included) on one axis: log while all values are positive, "
    "else symmetric-log (nnU-Net's Dice + CE loss is negative); the lower row shows each curve relative to its "
    "first epoch, 1 + (y - y0)/|y0|.",
    "Per-image held-out Dice is the latest value logged per held-out index (a re-evaluation replaces the "
    "earlier scores). A model's curve is the mean over its repeats at each epoch.",
    "Every number comes from the tracking server (root runs' tags, params and metrics, the bulk metric history "
    "and evaluation artifacts), never from typed-in values.",
]


@dataclass
class Context:
    """What the section builders share."""

    data: StudyData
    cfg: AnalyzeConfig
    cohorts: Cohorts
    out: Outputs
    client: MlflowClient
    cache: RunCache
    data_root: Path
    say: Callable[[str], None]
    memo: SectionMemo | None = None  # replays sections of an unchanged study (None: compute every section)

    @property
    def study(self) -> pd.DataFrame:
        return self.data.study()

    def build(self, section: Callable[[Context], None], extra: str = "") -> None:
        """One section of the report, replayed from an earlier analyze of the same study when it can be."""
        if self.memo is None:
            section(self)
            return

        def compute(say: Callable[[str], None]) -> None:
            saved, self.say = self.say, say
            try:
                section(self)
            finally:
                self.say = saved

        self.memo.run(section.__name__, self.out, self.say, compute, extra)

    def prepared_stamps(self) -> str:
        """Which prepared copy of each dataset is under data_root (the grids show its images): manifest stamps."""
        stamps = []
        for dataset in self.datasets():
            manifest = self.data_root / dataset / MANIFEST
            st = manifest.stat() if manifest.is_file() else None
            stamps.append(f"{manifest}:{st.st_mtime_ns}:{st.st_size}" if st else f"{manifest}:absent")
        return "\n".join(stamps)

    def datasets(self) -> list[str]:
        return sorted(self.data.pipelines.dataset.unique())

    @cached_property
    def grid_pipelines(self) -> dict[str, pd.DataFrame]:
        """Per dataset, the pipelines whose predictions its qualitative grid shows (one per model)."""
        p = self.data.pipelines
        reps = {ds: ql.representatives(p[(p.dataset == ds) & (p.role != "budget")]) for ds in self.datasets()}
        return {ds: r for ds, r in reps.items() if not r.empty}


def _model_meta(study: pd.DataFrame) -> pd.DataFrame:
    return study.groupby("model")[["year", "reasoning"]].first()


def section_overview(c: Context) -> None:
    study = c.study
    counts = study.pivot_table(index="model", columns="status", values="run_id", aggfunc="count", fill_value=0)
    counts.insert(0, "pipelines", counts.sum(axis=1))
    meta = _model_meta(study)
    counts = meta.join(counts).reset_index()
    c.out.table("status", "Pipelines per model by status", "overview", counts)
    c.out.table(
        "never_ran",
        "Pipelines whose code never trained to the end",
        "overview",
        tb.never_ran(study),
        "They count in error tables and are left out of every Dice statistic.",
    )
    c.out.table(
        "evaluation_failed",
        "Pipelines that trained but could not be evaluated",
        "overview",
        tb.evaluation_failed(study),
        "Their code ran; the held-out evaluation failed for the reason shown. No Dice, not counted as never ran.",
    )


def section_errors(c: Context) -> None:
    study = c.study
    by_model = tb.errors_by_model(study)
    types = [t.removeprefix("errors.") for t in tb.error_columns(study)]
    c.out.table("errors_by_model", "Errors by type per model (sum over pipelines)", "errors", by_model)
    c.out.table(
        "errors_by_cohort",
        "Errors by type per cohort",
        "errors",
        tb.errors_by_cohort(study),
        "errors_per_pipeline_sd is the SD across the cohort's pipelines.",
    )
    c.out.table(
        "fix_rounds", "Fix rounds per model", "errors", tb.fix_rounds(study), "fix_rounds_sd: SD across pipelines."
    )
    if not by_model.empty:
        c.out.figure(
            "errors_by_type",
            "Errors by type until the code ran, per model and year cohort (Fig. 2)",
            "errors",
            fg.errors_figure,
            by_model,
            types,
        )


COHORT_CURVE_SHARE = 0.5  # a cohort curve is drawn while at least this share of its pipelines has a value


def _mean_curve(data: StudyData, run_ids, metric: str = "val_loss") -> tuple[np.ndarray, np.ndarray] | None:
    got = data.mean_curve(list(run_ids), metric)
    return (got[0], got[1]) if got else None


def _panels_by_year(data: StudyData, frame: pd.DataFrame, metric: str = "val_loss") -> dict[str, list[fg.Line]]:
    panels: dict[str, list[fg.Line]] = {}
    for model, on in frame.groupby("model"):
        got = _mean_curve(data, on.run_id, metric)
        if got is None:
            continue
        year = str(on.year.iloc[0]) or "no year"
        panels.setdefault(f"{year} models", []).append(fg.Line(model, got[0], got[1]))
    # Distinct colours within a panel: the cohort colour says little when every line has it.
    cmap = fg.plt.get_cmap("tab20")
    for lines in panels.values():
        for i, line in enumerate(lines):
            lines[i] = fg.Line(line.label, line.x, line.y, tuple(cmap(i % 20)), line.mark)
    return dict(sorted(panels.items()))


def _baseline_line(data: StudyData, dataset: str, role: str = BASELINE) -> fg.Line | None:
    p = data.pipelines
    base = p[(p.role == role) & (p.dataset == dataset) & p.is_baseline]
    got = _mean_curve(data, base.run_id)
    return fg.Line("nnU-Net v2 (baseline)", got[0], got[1], fg.BASE) if got else None


def section_curves(c: Context) -> None:
    n = c.cfg.curve_epochs
    for dataset in c.datasets():
        on = c.study[c.study.dataset == dataset]
        panels = _panels_by_year(c.data, on)
        base = _baseline_line(c.data, dataset)
        if panels or base:
            c.out.figure(
                f"val_loss_{dataset}",
                f"Validation loss per epoch, {dataset} (Figs. 3, 11, 12)",
                "curves",
                fg.curves_figure,
                panels,
                base,
                "validation loss",
                f"{dataset}: validation loss per epoch (model = mean over repeats)",
                note="Loss formulations differ between pipelines (BCE, BCE+Dice, ...): compare shapes, not levels.",
            )
        panels8, rows = {}, []
        for comp in c.cohorts.comparisons:
            groups = []
            for group in (comp.a, comp.b):
                got = c.data.mean_curve(
                    list(on[in_group(on, comp, group)].run_id), "val_loss", max_epoch=n, min_share=COHORT_CURVE_SHARE
                )
                if got is not None:
                    groups.append((group.label, *got[:4]))
                    rows += [
                        {
                            "comparison": comp.name,
                            "group": group.label,
                            "epoch": int(e),
                            "mean": m,
                            "sd": s,
                            "n": int(k),
                            "pipelines": got[3],
                        }
                        for e, m, s, k in zip(got[0], got[1], got[2], got[4])
                    ]
            panels8[comp.name] = groups
        if any(panels8.values()):
            share = f"{COHORT_CURVE_SHARE:.0%}"
            c.out.figure(
                f"cohort_val_loss_{dataset}",
                f"Cohort validation loss, first {n} epochs, {dataset} (Fig. 8a, 8b)",
                "curves",
                fg.cohort_curves_figure,
                panels8,
                f"{dataset}: mean \u00b1 SD across pipelines, epochs 1-{n}",
                note=f"Mean and SD (not SEM) across the group's pipelines at each epoch; n = pipelines with a "
                f"curve. A group's curve stops where fewer than {share} of them still have a value (the "
                f"mean would jump as short runs end); n per epoch: table cohort_val_loss_{dataset}.",
            )
            c.out.table(
                f"cohort_val_loss_{dataset}",
                f"Cohort validation loss per epoch, {dataset} (Fig. 8a, 8b data)",
                "curves",
                pd.DataFrame(rows),
                "n: pipelines with a value at that epoch, of `pipelines`.",
            )


def _dice_groups(c: Context, dataset: str) -> list[tuple[str, np.ndarray, str]]:
    on = c.study[c.study.dataset == dataset]
    groups = []
    for model, rows in on.groupby("model"):
        groups.append((model, c.data.dice(rows.run_id), fg.colour_for(rows.year.iloc[0])))
    groups.sort(key=lambda g: -np.median(g[1]) if len(g[1]) else np.inf)
    base = c.data.pipelines[(c.data.pipelines.role == BASELINE) & (c.data.pipelines.dataset == dataset)]
    bvals = c.data.dice(base.run_id)
    return ([("nnU-Net v2 (baseline)", bvals, fg.GRAY)] if len(bvals) else []) + groups


def section_dice(c: Context) -> None:
    for dataset in c.datasets():
        groups = _dice_groups(c, dataset)
        if not any(len(g[1]) for g in groups):
            continue
        left = int(c.study[(c.study.dataset == dataset)].heldout_dice_mean.isna().sum())
        c.out.figure(
            f"dice_{dataset}",
            f"Held-out Dice per model, {dataset} (Figs. 5, 13)",
            "dice",
            fg.boxplot_figure,
            groups,
            f"{dataset}: per-image held-out Dice\n(sorted by median; baseline on top)",
            note=f"2024 blue, 2025 red, baseline gray; repeats pooled. {left} pipeline(s) without Dice left out.",
        )
    c.out.table(
        "dice_per_model",
        "Held-out Dice per model and dataset",
        "dice",
        tb.dice_per_model(c.study, c.data),
        "median/q1/q3 pool per-image scores; mean is the mean of pipeline means; sd_between_repeats is an SD.",
    )


def prefetch_grids(c: Context) -> None:
    """Download the predictions every grid will show, in one parallel batch (each small; kept in the cache)."""
    if c.grid_pipelines:
        ql.prefetch(c.client, c.cache, pd.concat(c.grid_pipelines.values(), ignore_index=True))


def section_qualitative(c: Context) -> None:
    plans = []
    for dataset, reps in c.grid_pipelines.items():
        per_image = c.data.dice_table(list(reps.run_id))
        index = ql.hard_image(per_image, list(reps.run_id))
        if index is not None:
            plans.append((dataset, reps, per_image, index))
    prefetch_grids(c)  # nothing left to download when the driver already did
    try:
        catalog = load_datasets()
    except ValueError:  # a broken user catalog: load_truth says so per dataset
        catalog = None
    for dataset, reps, per_image, index in plans:
        truth = ql.load_truth(dataset, index, c.data_root, catalog)
        masks = ql.predictions(c.cache, reps, index, truth.name)
        scores = per_image[per_image["index"] == index].set_index("run_id").dice
        reps = reps.assign(_base=reps.is_baseline.astype(int)).sort_values(
            ["_base", "heldout_dice_mean"], ascending=[False, False]
        )
        preds = [
            ("nnU-Net v2" if r.is_baseline else r.model, masks[r.run_id], float(scores.get(r.run_id, np.nan)))
            for r in reps.itertuples()
            if masks.get(r.run_id) is not None
        ]
        missing = [r.model for r in reps.itertuples() if masks.get(r.run_id) is None]
        note = (
            f"Held-out image #{index} ({truth.name or 'name unknown'}): the lowest median Dice across the models' "
            f"representative pipelines (the repeat with the median Dice)."
        )
        if truth.reason:
            note += f" Image and ground truth not shown: {truth.reason}; predictions only."
        if missing:
            note += f" No predictions.npz for: {', '.join(missing)}."
        if not preds and truth.image is None:
            c.out.notes.append(f"Qualitative grid for {dataset}: {note}")
            continue
        c.out.figure(
            f"qualitative_{dataset}",
            f"Hard held-out image and every model's prediction, {dataset} (Figs. 6, 7)",
            "qualitative",
            fg.qualitative_figure,
            truth.image,
            truth.mask,
            preds,
            f"{dataset}: held-out image #{index} ({truth.name or 'name unknown'})",
            note=note,
        )


def section_architecture(c: Context) -> None:
    study = c.study
    years = sorted({str(y) for y in study.year}, key=lambda y: (y != "2025", y != "2024", y))
    for year in years:
        label = {"2025": "Table 1", "2024": "Table 2"}.get(year, "")
        title = f"Architecture and training configuration, {year or 'no year'} models" + (
            f" ({label})" if label else ""
        )
        c.out.table(
            f"architecture_{year or 'other'}",
            title,
            "architecture",
            tb.architecture(study, year),
            "Most common value over the model's pipelines (k/n and the number of distinct values when they "
            "differ); training time: mean \u00b1 SD across datasets (repeats averaged first).",
        )
    c.out.table(
        "training_time",
        "Training time per model (mean \u00b1 SD across datasets)",
        "architecture",
        tb.training_time(study),
    )


def _pick_variability(c: Context) -> list[str]:
    if c.cfg.variability_models:
        return list(c.cfg.variability_models)
    reps = c.study.groupby("model").repeat.nunique()
    many = reps[reps >= 2].sort_values(ascending=False)
    if len(many) < 2:
        return list(many.index)
    meta = _model_meta(c.study)
    non = [m for m in many.index if meta.reasoning.get(m) == "false"]
    yes = [m for m in many.index if meta.reasoning.get(m) == "true"]
    if non and yes:  # as in the paper: one non-reasoning and one reasoning model
        return [non[0], yes[0]]
    return list(many.index[:2])


def section_variability(c: Context) -> None:
    study = c.study
    c.out.table(
        "variability_spread",
        "Run-to-run spread of held-out Dice",
        "variability",
        tb.variability_spread(study, c.data),
        "sd_of_means: SD (not SEM) across repeats.",
    )
    models = _pick_variability(c)
    if len(models) < 2:
        return
    a, b = models
    c.out.table(
        "variability_configs",
        f"Configuration per repeat: {a} and {b} (Tables 4, 5)",
        "variability",
        tb.variability_configs(study, models),
    )
    c.out.table(
        "variability_tests",
        f"Run-to-run U tests: {b} vs {a}",
        "variability",
        variability_test(
            study,
            {
                r: float(np.mean(cv[1]))
                for r in study[study.model.isin(models)].run_id
                if (cv := c.data.curve(r)) is not None
            },
            a,
            b,
        ),
        "One-sided Mann-Whitney U over repeats; effect_size: rank-biserial r of b vs a.",
    )
    chosen = study[study.model.isin(models)][["model", "dataset", "repeat", "reasoning", "run_id"]]
    for dataset in c.datasets():
        on = chosen[chosen.dataset == dataset]
        if on.groupby("model").repeat.nunique().reindex(models).fillna(0).min() < 2:
            continue
        base = c.data.pipelines[(c.data.pipelines.role == BASELINE) & (c.data.pipelines.dataset == dataset)]
        bvals = c.data.dice(base.run_id)
        groups = []
        for model in models:
            colour = fg.colour_for(on[on.model == model].reasoning.iloc[0])
            per = [
                (f"{model} #{r.repeat}", c.data.dice([r.run_id]), colour) for r in on[on.model == model].itertuples()
            ]
            groups += sorted(per, key=lambda g: -np.median(g[1]) if len(g[1]) else np.inf)
        groups = ([("nnU-Net v2 (baseline)", bvals, fg.GRAY)] if len(bvals) else []) + groups
        ref = float(np.median(bvals)) if len(bvals) else None
        c.out.figure(
            f"variability_dice_{dataset}",
            f"Run-to-run held-out Dice, {a} vs {b}, {dataset} (Fig. 9)",
            "variability",
            fg.boxplot_figure,
            groups,
            f"{dataset}: per repeat (sorted by median)\ndashed: baseline median",
            reference=ref,
        )
        panels = {}
        for model in models:
            lines = []
            for r in on[on.model == model].sort_values("repeat").itertuples():
                got = c.data.curve(r.run_id)
                if got:
                    lines.append(fg.Line(f"#{r.repeat}", got[0], got[1], fg.colour_for(r.reasoning)))
            panels[model] = lines
        bline = _baseline_line(c.data, dataset)
        c.out.figure(
            f"variability_loss_{dataset}",
            f"Run-to-run validation loss, {a} and {b}, {dataset} (Fig. 10)",
            "variability",
            fg.curves_figure,
            panels,
            bline,
            "validation loss",
            f"{dataset}: one line per repeat",
        )


def section_budget(c: Context) -> None:
    table = tb.budget_table(c.data)
    c.out.table(
        "budget",
        "Constant-budget reruns beside the pipelines they reran (Fig. 4)",
        "budget",
        table,
        "own_epochs: the epochs the LLM chose in the original pipeline.",
    )
    if table.empty:
        return
    budget = c.data.of_role("budget")
    for dataset in sorted(budget.dataset.unique()):
        on = budget[(budget.dataset == dataset) & ~budget.is_baseline]
        panels = _panels_by_year(c.data, on)
        marks = table[table.dataset == dataset].set_index("run_id").own_epochs
        for lines in panels.values():
            for i, line in enumerate(lines):
                rid = on[on.model == line.label].run_id
                own = marks.get(rid.iloc[0]) if len(rid) else None
                lines[i] = fg.Line(
                    line.label, line.x, line.y, line.colour, int(own) if own is not None and not pd.isna(own) else None
                )
        bline = _baseline_line(c.data, dataset, role="budget") or _baseline_line(c.data, dataset)
        c.out.figure(
            f"budget_{dataset}",
            f"Validation loss at a constant budget, {dataset} (Fig. 4)",
            "budget",
            fg.curves_figure,
            panels,
            bline,
            "validation loss",
            f"{dataset}: constant budget; dot = the model's own epoch choice",
        )


def section_beyond(c: Context) -> None:
    c.out.table(
        "compliance",
        "Prompt compliance per model",
        "beyond",
        tb.compliance(c.study),
        "Share of pipelines meeting each item; compliance_score: mean over items (docs/evaluation.md).",
    )
    cost = tb.cost(c.study)
    c.out.table("cost", "Cost and tokens per model", "beyond", cost, "Totals over the study and means per pipeline.")
    cols = [col for col in ("cost_usd_total", "tokens_in_per_pipeline", "tokens_out_per_pipeline") if col in cost]
    if not cost.empty and cols:
        c.out.figure(
            "cost",
            "Cost and tokens per model",
            "beyond",
            fg.bars_figure,
            cost,
            "model",
            cols,
            "cost and tokens per model",
            ylabel="value",
        )


def section_tidy(c: Context) -> None:
    tidy = c.data.pipelines.copy()
    tidy["start_time"] = tidy["start_time"].astype(str)
    c.out.table(
        "pipelines",
        "Tidy table: one row per pipeline root",
        "data",
        tidy,
        "Also in data/: curves.csv (run_id, metric, epoch, value) and per_image.csv (run_id, index, dice).",
    )
    if not c.data.superseded.empty:
        c.out.notes.append(f"{len(c.data.superseded)} root(s) superseded by a sweep retry were ignored.")


def section_data(c: Context) -> None:
    key = c.data.series_digest()
    c.out.data("curves", lambda: c.data.curves, key)
    c.out.data("per_image", lambda: c.data.images, key)


# The report's sections by what they are built from: the root runs alone (tags, params, summary metrics),
# then also the validation-loss curves, then also the per-image Dice (see analysis/series.py); the grids
# (section_qualitative) also need their predictions downloaded (prefetch_grids).
ROOT_SECTIONS = (section_overview, section_errors, section_recorded, section_architecture, section_beyond, section_tidy)
CURVE_SECTIONS = (section_curves, section_budget)
DICE_SECTIONS = (
    section_dice,
    section_ranking,
    section_paired,
    section_cohorts,
    section_variability,
    section_variance,
    section_efficiency,
    section_study_model,
    section_refinement,
)
