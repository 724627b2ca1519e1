"""The study file: which models, datasets, repeats, budget reruns and baselines a sweep runs (YAML, validated)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.models import REPLAY_PREFIX, ModelSpec, get_model, load_models
from llmseg_mlflow.config import BaselineConfig, Strict, default_of, field_names, problems, suggest
from llmseg_mlflow.errors import UsageError

BASELINE_DEFAULTS = {k: default_of(BaselineConfig, k) for k in ("epochs", "iterations")}  # the job's own defaults
# The packaged studies (package data; `studies/` at the repo root links here): `llmseg sweep demo` names one.
STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"


@dataclass(frozen=True)
class BudgetRerun:
    """Every pipeline of `models` on `datasets` trained again at `epochs` (and the baseline, if asked)."""

    epochs: int
    datasets: tuple[str, ...]
    models: tuple[str, ...]  # model keys (as tagged on the runs)
    baseline: bool = False


@dataclass(frozen=True)
class SeedRetrains:
    """Every pipeline of `models` on `datasets` trained again with seeds 0..count-1 (variance between trainings)."""

    count: int
    datasets: tuple[str, ...]
    models: tuple[str, ...]


@dataclass(frozen=True)
class RefineRounds:
    """Every pipeline of `models` on `datasets` refined until it has `rounds` rounds (`llmseg refine`)."""

    rounds: int
    datasets: tuple[str, ...]
    models: tuple[str, ...]


@dataclass(frozen=True)
class Baselines:
    """nnU-Net v2 on these datasets at this budget."""

    datasets: tuple[str, ...] = ()
    epochs: int = BASELINE_DEFAULTS["epochs"]
    iterations: int = BASELINE_DEFAULTS["iterations"]


@dataclass(frozen=True)
class Study:
    """A validated study file."""

    name: str
    path: Path
    models: tuple[ModelSpec, ...]
    model_args: dict[str, str]  # model key -> what `generate` is given (the key, or replay:/abs/dir)
    datasets: tuple[str, ...]
    default_repeats: int
    repeats: dict[tuple[str, str], int]  # (model key, dataset) -> count, where it differs from the default
    budget_reruns: tuple[BudgetRerun, ...]
    baselines: Baselines
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: SeedRetrains | None = None
    refine: RefineRounds | None = None
    promote: bool = False
    warnings: tuple[str, ...] = ()

    def repeats_for(self, model: str, dataset: str) -> int:
        """How many repeats of model on dataset."""
        return self.repeats.get((model, dataset), self.default_repeats)


def _lenient(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    # load_study's second pass: a part whose problems are listed already becomes None, so the
    # resolution step still checks every other part and the user sees all problems at once.
    try:
        return handler(value)
    except ValidationError:
        if not (info.context or {}).get("lenient"):
            raise
        return None


Item = WrapValidator(_lenient)  # fields are lenient through _Part; list items and mapping values through this
Count = Annotated[int, Field(ge=1)]
Names = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]  # `all`, a name, names


def _shape(scalar: type, expected: str) -> Discriminator:
    """A union of `scalar` and a mapping, told apart by the value, so a problem speaks of the form meant."""

    def branch(value: Any) -> str | None:
        if isinstance(value, dict):
            return "dict"
        return scalar.__name__ if isinstance(value, scalar) and not isinstance(value, bool) else None

    return Discriminator(branch, custom_error_type="shape", custom_error_message=f"expected {expected}")


def _filled(what: str) -> AfterValidator:
    def check(value: Any) -> Any:
        if not value or (isinstance(value, str) and ("'" in value or not value.strip())):  # ' breaks MLflow filters
            raise ValueError(f"expected {what}, got {value!r}")
        return value.strip() if isinstance(value, str) else value

    return AfterValidator(check)


class _Part(Strict):
    """A mapping of the study file, lenient in load_study's second pass."""

    @field_validator("*", mode="wrap")
    @classmethod
    def _lenient_field(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        return _lenient(value, handler, info)


class Selector(_Part):
    """Every catalog model with these attributes, e.g. {year: 2025, reasoning: false}."""

    year: int | None = None
    reasoning: bool | None = None
    provider: str | None = None
    fixture: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Selector:
        if not self.model_dump(exclude_none=True):
            raise ValueError(f"a selector takes one or more of {', '.join(field_names(Selector))}")
        return self


class PerModel(_Part):
    """`model: {count: 10, datasets: [brain-meningioma]}` under repeats.per_model."""

    count: Count
    datasets: Names = ["all"]


PerModelCount = Annotated[
    Annotated[Count, Tag("int")] | Annotated[PerModel, Tag("dict")], _shape(int, "a count or {count, datasets}"), Item
]


class RepeatsEntry(_Part):
    """`repeats: {default: 1, per_model: {gpt-4o: 10, other: {count: 10, datasets: [brain]}}}`."""

    default: Count = 1
    per_model: dict[str, PerModelCount] = {}


class RerunEntry(_Part):
    """One item of budget_reruns."""

    epochs: Count
    datasets: Names = ["all"]
    models: Names = ["all"]
    baseline: bool = False


class SeedsEntry(_Part):
    """The seeds section: `seeds: {count: 3, models: all, datasets: all}`."""

    count: Count
    datasets: Names = ["all"]
    models: Names = ["all"]


class RefineEntry(_Part):
    """The refine section: `refine: {rounds: 2, models: all, datasets: all}`."""

    rounds: Count
    datasets: Names = ["all"]
    models: Names = ["all"]


class BaselinesEntry(_Part):
    """The baselines section."""

    datasets: Names = ["all"]
    epochs: Count = BASELINE_DEFAULTS["epochs"]
    iterations: Count = BASELINE_DEFAULTS["iterations"]


class Overrides(_Part):
    """Harness settings a study may set for every job (GenerateConfig / TrainConfig fields)."""

    epochs: int | None = None
    max_batches: int | None = None
    max_fix_rounds: int | None = None
    timeout_s: float | int | None = None  # a whole number stays one
    memory_gb: float | int | None = None
    preflight: bool | None = None
    no_cache: bool | None = None
    stuck_after: int | None = None
    loop_hint: str | None = None


ModelItem = Annotated[
    Annotated[str, Tag("str")] | Annotated[Selector, Tag("dict")],
    _shape(str, "a model key, replay:DIR or a selector such as {year: 2025}"),
    Item,
]


class StudyFile(_Part):
    """The study YAML as written; load_study resolves its names into a Study."""

    name: Annotated[str, _filled("the study's name (its MLflow experiment, no quotes)")] = Field(
        "", validate_default=True
    )
    models: Annotated[
        list[ModelItem], _filled("a non-empty list of model keys, replay:DIR folders or selectors such as {year: 2025}")
    ] = Field([], validate_default=True)
    datasets: Annotated[
        list[Annotated[str, Item]], _filled("a non-empty list of dataset keys (see `llmseg datasets list`)")
    ] = Field([], validate_default=True)
    repeats: Annotated[
        Annotated[Count, Tag("int")] | Annotated[RepeatsEntry, Tag("dict")],
        _shape(int, "a count or {default, per_model}"),
    ] = 1
    budget_reruns: list[Annotated[RerunEntry, Item]] = []
    baselines: BaselinesEntry | None = None
    seeds: SeedsEntry | None = None
    refine: RefineEntry | None = None
    promote: bool = False  # at the end, register each dataset's best pipeline (llmseg promote)
    overrides: Overrides = Overrides()


def _names(errors: list[str], where: str, names: list[str], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The names out of `allowed`; `all` means every one."""
    if names == ["all"]:
        return allowed
    for name in names or ():  # None: its problems are listed already
        if name not in allowed:
            errors.append(
                f"{where}: {what} {name!r} is not in the study's {what}s{suggest(name, allowed)}; "
                f"the study has: {', '.join(allowed) or 'none'}"
            )
    return tuple(n for n in names or () if n in allowed)


def _resolve_models(
    errors: list[str], items: Sequence[str | Selector | None], base: Path, models_file: Path | None
) -> tuple[list[ModelSpec], dict[str, str], list[str]]:
    """Model keys, replay:DIR folders (relative to the study file) and selectors such as {year: 2025}."""
    if not items:
        return [], {}, []
    try:
        catalog = load_models(models_file)
    except (ValueError, OSError) as exc:
        errors.append(f"models: {exc}")
        return [], {}, []
    picked: dict[str, ModelSpec] = {}
    args: dict[str, str] = {}
    for i, item in enumerate(items):
        where = f"models[{i}]"
        if isinstance(item, str):
            arg = item
            if item.startswith(REPLAY_PREFIX):
                folder = Path(item[len(REPLAY_PREFIX) :].strip()).expanduser()
                arg = REPLAY_PREFIX + str(folder if folder.is_absolute() else (base / folder).resolve())
            elif item not in catalog:
                errors.append(
                    f"{where}: unknown model {item!r}{suggest(item, sorted(catalog))}; "
                    "see `llmseg models`, or use replay:DIR or a selector such as {year: 2025}"
                )
                continue
            try:
                spec = get_model(arg, models_file)
            except (LookupError, ValueError) as exc:
                errors.append(f"{where}: {exc}")
                continue
            if spec.key in args and args[spec.key] != arg:
                errors.append(
                    f"{where}: two replay folders are both named {spec.key!r}; runs are tagged by the "
                    "folder's name, so rename one"
                )
                continue
            picked[spec.key], args[spec.key] = spec, arg
        elif item is not None:  # None: its problems are listed already
            asked = item.model_dump(exclude_none=True)
            # Fixtures are recorded demo replies, not models: only a selector that asks for them gets them.
            want = {"fixture": False, **asked}
            found = [m for m in catalog.values() if all(getattr(m, k) == v for k, v in want.items())]
            if not found:
                errors.append(
                    f"{where}: selector {asked!r} matches no model of the catalog (`llmseg models` lists them)"
                )
            for m in found:
                picked.setdefault(m.key, m)
                args.setdefault(m.key, m.key)
    warnings = [
        f"{m.key} has no API: its jobs will fail; list its saved chat logs as replay:DIR instead"
        for m in picked.values()
        if m.provider == "none"
    ]
    return list(picked.values()), args, warnings


def _resolve_datasets(errors: list[str], keys: Sequence[str | None]) -> tuple[str, ...]:
    out = []
    for i, key in enumerate(keys):
        try:
            if key is not None:
                out.append(get_dataset(key).key)
        except (LookupError, ValueError) as exc:
            errors.append(f"datasets[{i}]: {exc.args[0] if exc.args else exc}")
    twice = sorted({d for d in out if out.count(d) > 1})
    if twice:
        errors.append(f"datasets: {', '.join(twice)} listed twice")
    return tuple(out)


def _resolve_repeats(
    errors: list[str], raw: int | RepeatsEntry | None, models: tuple[str, ...], datasets: tuple[str, ...]
) -> tuple[int, dict[tuple[str, str], int]]:
    """`repeats: 3`, or {default: 1, per_model: {gpt-4o: 10, other: {count: 10, datasets: [brain]}}}."""
    if not isinstance(raw, RepeatsEntry):
        return raw or 1, {}
    per: dict[tuple[str, str], int] = {}
    for model, value in (raw.per_model or {}).items():
        where = f"repeats.per_model.{model}"
        if model not in models:
            errors.append(f"{where}: model {model!r} is not in the study's models{suggest(model, models)}")
        elif isinstance(value, PerModel):
            on = _names(errors, f"{where}.datasets", value.datasets, datasets, "dataset")
            per.update({(model, d): value.count for d in on})
        elif value is not None:
            per.update({(model, d): value for d in datasets})
    return raw.default, per


def _resolve_budget(
    errors: list[str], items: Sequence[RerunEntry | None], models: tuple[str, ...], datasets: tuple[str, ...]
) -> tuple[BudgetRerun, ...]:
    out = []
    for i, item in enumerate(items):
        if item is not None:
            on = _names(errors, f"budget_reruns[{i}].datasets", item.datasets, datasets, "dataset")
            who = _names(errors, f"budget_reruns[{i}].models", item.models, models, "model")
            out.append(BudgetRerun(item.epochs, on, who, item.baseline))
    return tuple(out)


def find_study(path: Path) -> Path:
    """The study file: `path` as given, else a packaged study named by its bare name (`demo`, `paper.yaml`)."""
    path = Path(path).expanduser()
    if path.is_file() or path.parent != Path("."):
        return path
    packaged = STUDIES_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return packaged if packaged.is_file() else path


def _fail(path: Path, errors: list[str]) -> UsageError:
    sections = field_names(StudyFile)
    # Listed in the file's order: pydantic's problems and the resolution's come out of two steps.
    errors = sorted(errors, key=lambda e: sections.index(s) if (s := re.split(r"[.\[:]", e)[0]) in sections else -1)
    return UsageError(f"study file {path} has {len(errors)} problem(s):\n" + "\n".join(f"  {e}" for e in errors))


def load_study(path: Path, models_file: Path | None = None) -> Study:
    """Read and validate a study file; UsageError listing every problem (where, what, how to fix)."""
    path = find_study(path)
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.yaml")))
        raise UsageError(
            f"study file {path} does not exist; give a study YAML file or a packaged study's name "
            f"({names}, e.g. `llmseg sweep demo`); the packaged files in {STUDIES_DIR} show the format"
        )
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UsageError(f"study file {path} is not valid YAML ({exc}); fix the syntax") from exc
    if not isinstance(doc, dict):
        top = ", ".join(field_names(StudyFile))
        raise _fail(path, [f"top level: expected a mapping with {top}; got {type(doc).__name__}"])
    doc = {k: v for k, v in doc.items() if v is not None}  # `overrides:` with nothing under it: none
    errors: list[str] = []
    try:
        raw = StudyFile.model_validate(doc)
    except ValidationError as exc:
        errors = problems(exc)
        known = {k: v for k, v in doc.items() if k in field_names(StudyFile)}
        raw = StudyFile.model_validate(known, context={"lenient": True})
    models, args, warnings = _resolve_models(errors, raw.models or [], path.resolve().parent, models_file)
    keys = tuple(m.key for m in models)
    datasets = _resolve_datasets(errors, raw.datasets or [])
    default, repeats = _resolve_repeats(errors, raw.repeats, keys, datasets)
    budget = _resolve_budget(errors, raw.budget_reruns or [], keys, datasets)
    base = raw.baselines or BaselinesEntry(datasets=[])  # no section: no baselines
    on = _names(errors, "baselines.datasets", base.datasets, datasets, "dataset")
    baselines = Baselines(on, base.epochs, base.iterations)

    def picked(where: str, entry: SeedsEntry | RefineEntry) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The (datasets, models) a section names, checked against the study's."""
        return (
            _names(errors, f"{where}.datasets", entry.datasets, datasets, "dataset"),
            _names(errors, f"{where}.models", entry.models, keys, "model"),
        )

    seeds = SeedRetrains(raw.seeds.count, *picked("seeds", raw.seeds)) if raw.seeds is not None else None
    refine = RefineRounds(raw.refine.rounds, *picked("refine", raw.refine)) if raw.refine is not None else None
    if errors:
        raise _fail(path, errors)
    return Study(
        name=raw.name,
        path=path.resolve(),
        models=tuple(models),
        model_args=args,
        datasets=datasets,
        default_repeats=default,
        repeats=repeats,
        budget_reruns=budget,
        baselines=baselines,
        overrides=raw.overrides.model_dump(exclude_none=True),
        warnings=tuple(warnings),
        seeds=seeds,
        refine=refine,
        promote=bool(raw.promote),
    )
