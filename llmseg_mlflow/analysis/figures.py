"""The report's figures, drawn with matplotlib's Agg backend (no display needed); each writes one PNG."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

BLUE, RED, GRAY, BASE = "#1f77b4", "#d62728", "#7f7f7f", "#222222"
DPI = 90


def colour_for(cohort: str) -> str:
    """2024 / non-reasoning blue, 2025 / reasoning red (as in the paper), anything else gray."""
    return {"2024": BLUE, "false": BLUE, "non-reasoning": BLUE, "2025": RED, "true": RED, "reasoning": RED}.get(
        str(cohort), GRAY)


@dataclass(frozen=True)
class Line:
    """One curve: a label, x (epochs) and y, an optional marker epoch and a colour."""

    label: str
    x: np.ndarray
    y: np.ndarray
    colour: str = GRAY
    mark: int | None = None


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # fixed margins: a "tight" bounding box would lay every text out twice
    plt.close(fig)


def errors_figure(errors: pd.DataFrame, types: list[str], path: Path) -> None:
    """Fig. 2: stacked bars of errors by type per model, one panel per year cohort."""
    cohorts = [c for c in ("2024", "2025") if (errors.year == c).any()] + sorted(
        {str(y) for y in errors.year if str(y) not in ("2024", "2025")})
    fig, axes = plt.subplots(1, len(cohorts), figsize=(6 * len(cohorts), 5.2), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab20")
    for ax, cohort in zip(axes[0], cohorts):
        on = errors[errors.year.astype(str) == cohort]
        bottom = np.zeros(len(on))
        for i, t in enumerate(types):
            vals = on[t].to_numpy(dtype=float) if t in on else np.zeros(len(on))
            ax.bar(on.model, vals, bottom=bottom, color=cmap(i % 20), label=t)
            bottom += vals
        ax.set_title(f"{cohort or 'no year'} models")
        ax.set_ylabel("errors until the code ran (sum over pipelines)")
        ax.tick_params(axis="x", rotation=60)
        for lbl in ax.get_xticklabels():
            lbl.set_ha("right")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), fontsize=8)
    fig.subplots_adjust(left=0.1 if len(cohorts) == 1 else 0.07, right=0.98, top=0.82, bottom=0.33, wspace=0.08)
    _save(fig, path)


def curves_figure(panels: dict[str, list[Line]], baseline: Line | None, ylabel: str, title: str, path: Path,
                  log: bool = True) -> None:
    """Figs. 3, 11, 12 (and 4, 10): one panel per group of curves, the baseline in each panel."""
    names = list(panels) or ["(none)"]
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        for line in panels.get(name, []):
            ax.plot(line.x, line.y, lw=1.2, color=line.colour, label=line.label, alpha=0.85)
            if line.mark is not None and line.mark in set(line.x.tolist()):
                ax.plot([line.mark], [line.y[list(line.x).index(line.mark)]], "o", color=line.colour, ms=6)
        if baseline is not None:
            ax.plot(baseline.x, baseline.y, lw=2.2, color=BASE, ls="--", label=baseline.label)
        if log and all((ln.y > 0).all() for ln in panels.get(name, []) if len(ln.y)):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2 if len(panels.get(name, [])) > 8 else 1)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.08 if len(names) > 1 else 0.13, right=0.98, top=0.85, bottom=0.12, wspace=0.06)
    _save(fig, path)


def cohort_curves_figure(panels: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray, int]]],
                         title: str, path: Path) -> None:
    """Fig. 8a/b: per comparison, each group's mean curve with a +/- SD band (across pipelines)."""
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.2), squeeze=False)
    for ax, (name, groups) in zip(axes[0], panels.items()):
        for label, x, mean, sd, n in groups:
            c = colour_for(label)
            ax.plot(x, mean, color=c, lw=2, label=f"{label} (n={n})")
            ax.fill_between(x, mean - sd, mean + sd, color=c, alpha=0.2)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss (mean \u00b1 SD)")
        ax.grid(alpha=0.3)
        if groups:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.08 if len(panels) > 1 else 0.13, right=0.98, top=0.85, bottom=0.12, wspace=0.2)
    _save(fig, path)


def boxplot_figure(groups: list[tuple[str, np.ndarray, str]], title: str, path: Path, xlabel: str = "held-out Dice",
                   reference: float | None = None) -> None:
    """Figs. 5, 9, 13: horizontal boxplots in the given order, top to bottom (the baseline first)."""
    groups = [g for g in groups if len(g[1])] or [("(no scores)", np.array([np.nan]), GRAY)]
    height = 0.38 * len(groups) + 1.5 + 0.2 * title.count("\n")
    fig, ax = plt.subplots(figsize=(7, height))
    data = [g[1] for g in reversed(groups)]
    bp = ax.boxplot(data, orientation="horizontal", patch_artist=True, widths=0.6, showfliers=True,
                    flierprops={"markersize": 2, "alpha": 0.5})
    for patch, (_, _, colour) in zip(bp["boxes"], reversed(groups)):
        patch.set_facecolor(colour)
        patch.set_alpha(0.55)
    ax.set_yticks(range(1, len(groups) + 1), [g[0] for g in reversed(groups)], fontsize=8)
    if reference is not None and not np.isnan(reference):
        ax.axvline(reference, color=GRAY, ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_xlim(-0.02, 1.02)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
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


def qualitative_figure(image: np.ndarray | None, truth: np.ndarray | None, preds: list[tuple[str, np.ndarray, float]],
                       title: str, path: Path) -> None:
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
        mosaic[y:y + h, x:x + w] = _rgb(arr, (h, w))
    fig = plt.figure(figsize=(mosaic.shape[1] / 80, mosaic.shape[0] / 80 + 0.4))
    ax = fig.add_axes((0, 0, 1, mosaic.shape[0] / 80 / (mosaic.shape[0] / 80 + 0.4)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    for i, (label, _) in enumerate(tiles):
        r, c = divmod(i, cols)
        ax.text(c * (w + gap_x) + w / 2, r * (h + gap_y) + gap_y - 3, label, ha="center", va="bottom", fontsize=7)
    fig.suptitle(title, fontsize=9, y=0.995, va="top")
    _save(fig, path)


def bars_figure(frame: pd.DataFrame, label: str, columns: list[str], title: str, path: Path, ylabel: str) -> None:
    """Grouped bars per model (cost, tokens)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 5), squeeze=False)
    for ax, col in zip(axes[0], columns):
        ax.bar(frame[label], frame[col], color=BLUE)
        ax.set_title(col)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", rotation=60)
        for lbl in ax.get_xticklabels():
            lbl.set_ha("right")
    fig.suptitle(title)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.33, wspace=0.25)
    _save(fig, path)
