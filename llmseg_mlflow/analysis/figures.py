"""The report's figures, drawn with matplotlib's Agg backend (no display needed); each writes one PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import cbook, ticker  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

BLUE, RED, GRAY, BASE = "#1f77b4", "#d62728", "#7f7f7f", "#222222"
DPI = 90
# Part of every figure's cache key (outputs.py): raise it when a figure is drawn differently, or a cached PNG
# drawn by the old code would be reused for unchanged data (2: baseline on a symlog axis, relative panel).
STYLE = 2


def colour_for(cohort: str) -> str:
    """2024 / non-reasoning blue, 2025 / reasoning red (as in the paper), anything else gray."""
    return {"2024": BLUE, "false": BLUE, "non-reasoning": BLUE, "2025": RED, "true": RED, "reasoning": RED}.get(
        str(cohort), GRAY
    )


@dataclass(frozen=True)
class Line:
    """One curve: a label, x (epochs) and y, an optional marker epoch and a colour."""

    label: str
    x: np.ndarray
    y: np.ndarray
    colour: str | tuple[float, ...] = GRAY  # a name, or an RGBA tuple from a colour map
    mark: int | None = None


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed margins: a "tight" bounding box would lay every text out twice. Light PNG compression: zlib's
    # default level costs several times more for files only ~10% smaller.
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})
    plt.close(fig)


def _title(ax, text: str, **kwargs) -> None:
    """An axes title at a fixed height: matplotlib otherwise measures every tick label to place it."""
    ax.set_title(text, y=1.0, pad=4, **kwargs)


def _log_y(ax) -> None:
    """A log y axis labelled 0.01, 0.02, 0.05, ...: plain labels, no mathtext to typeset for each tick."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(ticker.NullLocator())  # minor ticks: dozens of unlabelled Tick objects per axis


def errors_figure(errors: pd.DataFrame, types: list[str], path: Path) -> None:
    """Fig. 2: stacked bars of errors by type per model, one panel per year cohort."""
    cohorts = [c for c in ("2024", "2025") if (errors.year == c).any()] + sorted(
        {str(y) for y in errors.year if str(y) not in ("2024", "2025")}
    )
    fig, axes = plt.subplots(1, len(cohorts), figsize=(6 * len(cohorts), 5.2), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab20")
    for ax, cohort in zip(axes[0], cohorts):
        on = errors[errors.year.astype(str) == cohort]
        bottom = np.zeros(len(on))
        for i, t in enumerate(types):
            vals = on[t].to_numpy(dtype=float) if t in on else np.zeros(len(on))
            ax.bar(on.model, vals, bottom=bottom, color=cmap(i % 20), label=t)
            bottom += vals
        _title(ax, f"{cohort or 'no year'} models")
        ax.set_ylabel("errors until the code ran (sum over pipelines)")
        ax.tick_params(axis="x", rotation=60)
        for lbl in ax.get_xticklabels():
            lbl.set_ha("right")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), fontsize=8)
    fig.subplots_adjust(left=0.1 if len(cohorts) == 1 else 0.07, right=0.98, top=0.82, bottom=0.33, wspace=0.08)
    _save(fig, path)


def normalised(y: np.ndarray) -> np.ndarray:
    """A curve relative to its first epoch: 1 + (y - y0) / |y0|, i.e. y / y0 when y0 > 0.

    Written this way so a negative loss (nnU-Net's Dice + CE) that falls still falls, where y / y0 would
    turn it upside down; a curve starting at 0 is scaled by its largest magnitude instead."""
    y = np.asarray(y, dtype=float)
    if not len(y):
        return y
    scale = abs(y[0]) if np.isfinite(y[0]) and y[0] != 0 else float(np.nanmax(np.abs(y)) or 1.0)
    return 1.0 + (y - y[0]) / scale


def _symlog_y(ax, values: np.ndarray) -> None:
    """A symmetric log y axis for curves that reach zero or below (a log axis would drop them): linear within
    the smallest non-zero magnitude's decade, logarithmic beyond, labels as plain numbers."""
    mags = np.abs(values[np.isfinite(values) & (values != 0)])
    thresh = 10.0 ** np.floor(np.log10(mags.min())) if len(mags) else 1.0
    ax.set_yscale("symlog", linthresh=thresh, linscale=0.5)
    ax.yaxis.set_major_locator(ticker.SymmetricalLogLocator(base=10, linthresh=thresh, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(ticker.NullLocator())


def curves_figure(
    panels: dict[str, list[Line]],
    baseline: Line | None,
    ylabel: str,
    title: str,
    path: Path,
    log: bool = True,
    relative: bool = True,
) -> None:
    """Figs. 3, 11, 12 (and 4, 10): one panel per group of curves, the baseline in each panel; with `relative`,
    a second row with every curve normalised to its first epoch (see normalised)."""
    names = list(panels) or ["(none)"]
    rows = 2 if relative else 1
    fig, axes = plt.subplots(
        rows, len(names), figsize=(6 * len(names), 4.2 + 3.4 * (rows - 1)), squeeze=False, sharey="row"
    )
    everything = [ln for name in names for ln in panels.get(name, [])] + ([baseline] if baseline else [])
    values = np.concatenate([np.asarray(ln.y, dtype=float) for ln in everything] or [np.array([1.0])])
    for row in range(rows):
        rel = row == 1
        for ax, name in zip(axes[row], names):
            lines = [(ln, False) for ln in panels.get(name, [])] + ([(baseline, True)] if baseline else [])
            for line, is_base in lines:
                if not len(line.y):
                    continue
                y = normalised(line.y) if rel else np.asarray(line.y, dtype=float)
                style = {"lw": 2.2, "color": BASE, "ls": "--"} if is_base else {"lw": 1.2, "color": line.colour}
                ax.plot(line.x, y, label=line.label, alpha=1.0 if is_base else 0.85, **style)
                if line.mark is not None and line.mark in set(line.x.tolist()):
                    ax.plot([line.mark], [y[list(line.x).index(line.mark)]], "o", color=line.colour, ms=6)
            # One scale per row over every curve, baseline included: nnU-Net's loss is negative, and a log
            # axis chosen from the LLM curves alone left its curve off the plot (issue #17).
            if rel:
                ax.axhline(1.0, color=GRAY, lw=0.8, ls=":")
            elif log and (values > 0).all():
                _log_y(ax)
            elif log:
                _symlog_y(ax, values)
            _title(ax, f"{name}, relative to epoch 1" if rel else name)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{ylabel} (first epoch = 1)" if rel else ylabel)
            ax.grid(alpha=0.3)
            if not rel and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, ncol=2 if len(panels.get(name, [])) > 8 else 1)
    fig.suptitle(title)
    top = 0.85 if rows == 1 else 0.91
    fig.subplots_adjust(
        left=0.08 if len(names) > 1 else 0.13, right=0.98, top=top, bottom=0.12 / rows, wspace=0.06, hspace=0.3
    )
    _save(fig, path)


def cohort_curves_figure(
    panels: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray, int]]], title: str, path: Path
) -> None:
    """Fig. 8a/b: per comparison, each group's mean curve with a +/- SD band (across pipelines)."""
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.2), squeeze=False)
    for ax, (name, groups) in zip(axes[0], panels.items()):
        for label, x, mean, sd, n in groups:
            c = colour_for(label)
            ax.plot(x, mean, color=c, lw=2, label=f"{label} (n={n})")
            ax.fill_between(x, mean - sd, mean + sd, color=c, alpha=0.2)
        _title(ax, name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss (mean \u00b1 SD)")
        ax.grid(alpha=0.3)
        if groups:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.08 if len(panels) > 1 else 0.13, right=0.98, top=0.85, bottom=0.12, wspace=0.2)
    _save(fig, path)


def boxplot_figure(
    groups: list[tuple[str, np.ndarray, str]],
    title: str,
    path: Path,
    xlabel: str = "held-out Dice",
    reference: float | None = None,
) -> None:
    """Figs. 5, 9, 13: horizontal boxplots in the given order, top to bottom (the baseline first).

    Boxes (median, IQR, whiskers at 1.5 IQR, fliers) are matplotlib's own statistics, drawn as one collection
    per element: ax.boxplot makes six artists per box, which at study scale costs more than the rest of the figure.
    """
    groups = [g for g in groups if len(g[1])] or [("(no scores)", np.array([np.nan]), GRAY)]
    height = 0.38 * len(groups) + 1.5 + 0.2 * title.count("\n")
    fig, ax = plt.subplots(figsize=(7, height))
    stats = cbook.boxplot_stats([np.asarray(g[1], dtype=float) for g in groups], whis=1.5)
    ys = np.arange(len(groups), 0, -1, dtype=float)  # the first group on top
    half, cap = 0.3, 0.15
    ax.add_collection(
        PolyCollection(  # translucent fill, opaque outline
            [
                [(s["q1"], y - half), (s["q3"], y - half), (s["q3"], y + half), (s["q1"], y + half)]
                for s, y in zip(stats, ys)
            ],
            facecolors=[to_rgba(g[2], 0.55) for g in groups],
            edgecolors="black",
            linewidths=1,
        )
    )
    segments = []
    for s, y in zip(stats, ys):
        segments += [
            [(s["whislo"], y), (s["q1"], y)],
            [(s["q3"], y), (s["whishi"], y)],
            [(s["whislo"], y - cap), (s["whislo"], y + cap)],
            [(s["whishi"], y - cap), (s["whishi"], y + cap)],
        ]
    ax.add_collection(LineCollection(segments, colors="black", linewidths=1))
    ax.add_collection(
        LineCollection(
            [[(s["med"], y - half), (s["med"], y + half)] for s, y in zip(stats, ys)], colors="C1", linewidths=1.5
        )
    )
    fliers = [(x, y) for s, y in zip(stats, ys) for x in s["fliers"]]
    if fliers:
        fx, fy = np.array(fliers).T
        ax.plot(fx, fy, "o", ms=2, mfc="none", mec="black", alpha=0.5, ls="none")
    ax.set_yticks(ys, [g[0] for g in groups], fontsize=8)
    ax.set_ylim(0.4, len(groups) + 0.6)
    if reference is not None and not np.isnan(reference):
        ax.axvline(reference, color=GRAY, ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_xlim(-0.02, 1.02)
    ax.grid(axis="x", alpha=0.3)
    _title(ax, title, fontsize=10)
    fig.subplots_adjust(left=0.3, right=0.97, top=1 - (0.5 + 0.2 * title.count("\n")) / height, bottom=0.6 / height)
    _save(fig, path)


def _rgb(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image or mask as float RGB in [0, 1] at `size` (nearest neighbour)."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3:
        a = a[..., :3]
    a = a.astype(float)
    a = a / a.max() if a.max() > 1 else a
    ys = (np.arange(size[0]) * a.shape[0] / size[0]).astype(int)
    xs = (np.arange(size[1]) * a.shape[1] / size[1]).astype(int)
    a = a[ys][:, xs]
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def qualitative_figure(
    image: np.ndarray | None,
    truth: np.ndarray | None,
    preds: list[tuple[str, np.ndarray, float]],
    title: str,
    path: Path,
) -> None:
    """Figs. 6, 7: the image, its ground truth, and each model's prediction with its Dice (one mosaic)."""
    tiles: list[tuple[str, np.ndarray]] = []
    if image is not None:
        tiles.append(("image", image))
    if truth is not None:
        tiles.append(("ground truth", truth))
    tiles += [(f"{m}\nDice {d:.3f}", p) for m, p, d in preds]
    cols = min(8, max(1, len(tiles)))
    rows = max(1, int(np.ceil(len(tiles) / cols)))
    first = tiles[0][1] if tiles else np.zeros((64, 64))
    scale = 128 / max(first.shape[:2])
    h, w = max(1, int(first.shape[0] * scale)), max(1, int(first.shape[1] * scale))
    gap_x, gap_y = 6, 34  # room for the two-line label above each tile
    # Grey page: an all-foreground (white) prediction must still read as a tile, not as empty space.
    mosaic = np.full((rows * (h + gap_y), cols * (w + gap_x), 3), 0.8)
    for i, (_, arr) in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = r * (h + gap_y) + gap_y, c * (w + gap_x)
        mosaic[y : y + h, x : x + w] = _rgb(arr, (h, w))
    # The mosaic is pasted pixel for pixel (figimage): no resampling of a large image, only the labels to draw.
    height, width, top = mosaic.shape[0], mosaic.shape[1], 36
    fig = plt.figure(figsize=(width / DPI, (height + top) / DPI), dpi=DPI)
    fig.figimage(mosaic, xo=0, yo=0, origin="upper")
    for i, (label, _) in enumerate(tiles):
        r, c = divmod(i, cols)
        fig.text(
            (c * (w + gap_x) + w / 2) / width,
            (height - (r * (h + gap_y) + gap_y - 3)) / (height + top),
            label,
            ha="center",
            va="bottom",
            fontsize=7,
        )
    fig.suptitle(title, fontsize=9, y=1 - 4 / (height + top), va="top")
    _save(fig, path)


def bars_figure(frame: pd.DataFrame, label: str, columns: list[str], title: str, path: Path, ylabel: str) -> None:
    """Grouped bars per model (cost, tokens)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 5), squeeze=False)
    for ax, col in zip(axes[0], columns):
        ax.bar(frame[label], frame[col], color=BLUE)
        _title(ax, col)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", rotation=60)
        for lbl in ax.get_xticklabels():
            lbl.set_ha("right")
    fig.suptitle(title)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.33, wspace=0.25)
    _save(fig, path)


def rounds_figure(part: pd.DataFrame, baseline: float | None, dataset: str, path: Path) -> None:
    """Held-out Dice per refinement round, a line per model; nnU-Net's as a dashed line."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, rows in part.groupby("model"):
        ax.plot(rows["round"], rows.heldout_dice_mean, marker="o", label=str(model))
    if baseline is not None:
        ax.axhline(baseline, color=BASE, linestyle="--", label="nnU-Net v2 (baseline)")
    ax.set_xlabel("round (0: as generated)")
    ax.set_ylabel("held-out Dice")
    ax.set_xticks(sorted(part["round"].unique()))
    _title(ax, f"{dataset}: refinement rounds")
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.12)
    _save(fig, path)
