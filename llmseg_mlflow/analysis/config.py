"""What `analyze` is asked to do: the study, filters, test settings and the cohort definitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmseg_mlflow.errors import UsageError


@dataclass(frozen=True)
class Group:
    """One side of a comparison: pipelines whose tag has one of `values`, or whose model is in `models`."""

    label: str
    values: tuple[str, ...] = ()
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """A cohort comparison: the one-sided test asks whether group b scores higher than group a."""

    name: str
    tag: str
    a: Group
    b: Group


DEFAULT_COMPARISONS = (
    Comparison("year", "year", Group("2024", ("2024",)), Group("2025", ("2025",))),
    Comparison("reasoning", "reasoning", Group("non-reasoning", ("false",)), Group("reasoning", ("true",))),
)


@dataclass(frozen=True)
class Cohorts:
    """The comparisons of Table 3 and per-model tag overrides (e.g. a model logged with an empty year)."""

    comparisons: tuple[Comparison, ...] = DEFAULT_COMPARISONS
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)


COHORTS_EXAMPLE = """\
comparisons:
  year: {tag: year, a: "2024", b: "2025"}            # a tag value, or a list of values
  reasoning:
    tag: reasoning
    a: {label: non-reasoning, values: ["false"]}
    b: {label: reasoning, values: ["true"]}
  family: {a: {label: gpt, models: [gpt-4, gpt-4o]}, b: {label: claude, models: [claude-4-sonnet]}}
models:                                              # optional: change a model's tags for the analysis
  my-model: {year: "2025", reasoning: "true"}
"""


def _group(where: str, raw: Any) -> Group:
    if isinstance(raw, (str, int, bool)):
        value = str(raw).lower() if isinstance(raw, bool) else str(raw)
        return Group(value, (value,))
    if isinstance(raw, list):
        vals = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in raw)
        return Group("+".join(vals), vals)
    if isinstance(raw, dict) and ("values" in raw or "models" in raw):
        vals = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in raw.get("values") or ())
        models = tuple(str(m) for m in raw.get("models") or ())
        return Group(str(raw.get("label") or "+".join(vals or models)), vals, models)
    raise UsageError(
        f"{where}: a group is a tag value, a list of values, or {{label, values}} / {{label, models}}; "
        f"got {raw!r}. Example:\n{COHORTS_EXAMPLE}"
    )


def load_cohorts(path: Path | None) -> Cohorts:
    """The cohorts YAML (see COHORTS_EXAMPLE), or the paper's two comparisons when path is None."""
    if path is None:
        return Cohorts()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read the cohorts file {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("comparisons", {}), dict):
        raise UsageError(
            f"{path}: expected a mapping with 'comparisons' (and optional 'models'). Example:\n{COHORTS_EXAMPLE}"
        )
    comps = []
    for name, raw in (data.get("comparisons") or {}).items():
        if not isinstance(raw, dict) or "a" not in raw or "b" not in raw:
            raise UsageError(f"{path}: comparison {name!r} needs 'a' and 'b'. Example:\n{COHORTS_EXAMPLE}")
        comps.append(
            Comparison(
                str(name),
                str(raw.get("tag", name)),
                _group(f"{path}: {name}.a", raw["a"]),
                _group(f"{path}: {name}.b", raw["b"]),
            )
        )
    overrides = data.get("models") or {}
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise UsageError(f"{path}: 'models' maps a model key to tags, e.g. my-model: {{year: '2025'}}")
    return Cohorts(
        tuple(comps) or DEFAULT_COMPARISONS,
        {
            str(k): {str(t): str(v).lower() if isinstance(v, bool) else str(v) for t, v in tags.items()}
            for k, tags in overrides.items()
        },
    )


@dataclass(frozen=True)
class AnalyzeConfig:
    """Everything `analyze` needs; the tracking server comes from MLFLOW_TRACKING_URI as everywhere in MLflow."""

    study: str = "llmseg"
    output: Path = Path("report")
    datasets: tuple[str, ...] = ()  # empty: all
    models: tuple[str, ...] = ()  # empty: all (the baseline is always kept)
    cohorts_file: Path | None = None
    alpha: float = 0.05
    bonferroni: bool = False
    variability_models: tuple[str, ...] = ()  # two models for the run-to-run U test; empty: picked
    data_root: Path | None = None  # prepared datasets for the qualitative grid (default $LLMSEG_HOME/data)
    cache_dir: Path | None = None  # default $LLMSEG_HOME/analysis-cache
    log_run: bool = True  # log the outputs as a kind=analysis run
    refresh: bool = False  # list every root again instead of only what changed since the last analyze
    curve_epochs: int = 20  # cohort mean +/- SD over the first N epochs (Fig. 8)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise UsageError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if self.variability_models and len(self.variability_models) != 2:
            raise UsageError(f"--variability-models takes two model keys (A,B), got {list(self.variability_models)}")
