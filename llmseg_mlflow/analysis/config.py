"""What `analyze` is asked to do: the study, filters, test settings and the cohort definitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from llmseg_mlflow.config import LoosePath, Strict, describe
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


TagValue = str | int | bool  # YAML's 2025 and true stand for the tag values "2025" and "true"
_GROUP_FORMS = "a group is a tag value, a list of values, or {label, values} / {label, models}"


def _text(value: TagValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class GroupEntry(Strict):
    """One side of a comparison as written: "2024", ["2025", "2026"], {label, values} or {label, models}."""

    label: str | None = None
    values: list[TagValue] = []
    models: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, (str, int, bool, list)):
            return {"values": data if isinstance(data, list) else [data]}
        if not isinstance(data, dict):
            raise ValueError(f"{_GROUP_FORMS}; got {data!r}")
        return data

    @model_validator(mode="after")
    def _not_empty(self) -> GroupEntry:
        if not self.values and not self.models:
            raise ValueError(f"{_GROUP_FORMS}; this one names no values and no models")
        return self

    def group(self) -> Group:
        """The group the analysis tests."""
        values = tuple(_text(v) for v in self.values)
        return Group(self.label or "+".join(values or self.models), values, tuple(self.models))


class ComparisonEntry(Strict):
    """One comparison as written; the tag defaults to the comparison's name."""

    tag: str | None = None
    a: GroupEntry
    b: GroupEntry


class CohortsFile(Strict):
    """The cohorts YAML (see COHORTS_EXAMPLE)."""

    comparisons: dict[str, ComparisonEntry] = {}
    models: dict[str, dict[str, TagValue]] = {}  # model key -> the tags the analysis uses instead


def load_cohorts(path: Path | None) -> Cohorts:
    """The cohorts YAML (see COHORTS_EXAMPLE), or the paper's two comparisons when path is None."""
    if path is None:
        return Cohorts()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read the cohorts file {path}: {exc}") from exc
    try:
        raw = CohortsFile.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{describe(exc, f'cohorts file {path}')}\nExample:\n{COHORTS_EXAMPLE}") from None
    comps = tuple(Comparison(name, c.tag or name, c.a.group(), c.b.group()) for name, c in raw.comparisons.items())
    overrides = {key: {t: _text(v) for t, v in tags.items()} for key, tags in raw.models.items()}
    return Cohorts(comps or DEFAULT_COMPARISONS, overrides)


Keys = Annotated[tuple[str, ...], Field(strict=False)]  # a list from Python code works as well as a tuple


class AnalyzeConfig(Strict):
    """Everything `analyze` needs; the tracking server comes from MLFLOW_TRACKING_URI as everywhere in MLflow."""

    study: str = Field(default="llmseg", description="Study (the `study` tag of the pipeline runs).")
    output: LoosePath = Field(default=Path("report"), description="Folder for index.html, tables/, figures/, data/.")
    datasets: Keys = ()  # empty: all
    models: Keys = ()  # empty: all (the baseline is always kept)
    cohorts_file: LoosePath | None = None
    recorded_errors: LoosePath | None = (
        None  # CSV model,errors[,source]: counts a source recorded (analysis/recorded.py)
    )
    alpha: float = Field(default=0.05, description="Significance level of the U tests.")
    bonferroni: bool = False
    variability_models: Keys = ()  # two models for the run-to-run U test; empty: picked
    data_root: LoosePath | None = None  # prepared datasets for the qualitative grid (default $LLMSEG_HOME/data)
    cache_dir: LoosePath | None = None  # default $LLMSEG_HOME/analysis-cache
    log_run: bool = True  # log the outputs as a kind=analysis run
    refresh: bool = False  # list every root again instead of only what changed since the last analyze
    curve_epochs: int = 20  # cohort mean +/- SD over the first N epochs (Fig. 8)
    bootstrap_resamples: int = Field(
        default=2000, ge=100, description="Bootstrap resamples behind every confidence interval (seeded)."
    )

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"expected a number between 0 and 1 (--alpha), got {value}")
        return value

    @field_validator("variability_models")
    @classmethod
    def _two(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value and len(value) != 2:
            raise ValueError(f"expected two model keys (--variability-models A,B), got {list(value)}")
        return value
