"""The study file: which models, datasets, repeats, budget reruns and baselines a sweep runs (YAML, validated)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.models import REPLAY_PREFIX, ModelSpec, get_model, load_models
from llmseg_mlflow.errors import UsageError

TOP_LEVEL = ("name", "models", "datasets", "repeats", "budget_reruns", "baselines", "overrides")
SELECTOR_FIELDS = ("year", "reasoning", "provider", "fixture")
# Harness settings a study may set for every job (GenerateConfig / TrainConfig fields).
OVERRIDE_TYPES: dict[str, type | tuple[type, ...]] = {
    "epochs": int,
    "max_batches": int,
    "max_fix_rounds": int,
    "timeout_s": (int, float),
    "memory_gb": (int, float),
    "preflight": bool,
    "no_cache": bool,
    "stuck_after": int,
    "loop_hint": str,
}
BASELINE_DEFAULTS = {"epochs": 100, "iterations": 250}
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
    warnings: tuple[str, ...] = ()

    def repeats_for(self, model: str, dataset: str) -> int:
        """How many repeats of model on dataset."""
        return self.repeats.get((model, dataset), self.default_repeats)


class _Errors:
    """Collects every problem of a study file so the user fixes them all in one go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.items.append(f"  {where}: {problem}")

    def raise_if_any(self) -> None:
        if self.items:
            raise UsageError(f"study file {self.path} has {len(self.items)} problem(s):\n" + "\n".join(self.items))


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _int(errors: _Errors, where: str, value: Any, minimum: int = 1) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        errors.add(where, f"expected a whole number >= {minimum}, got {value!r}")
        return None
    return value


def _names(errors: _Errors, where: str, value: Any, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A list of names out of `allowed`; `all` (or absent -> caller's default) means every one."""
    if value == "all":
        return allowed
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.add(where, f"expected `all` or a list of {what} names, got {value!r}")
        return ()
    for name in value:
        if name not in allowed:
            errors.add(
                where,
                f"{what} {name!r} is not in the study's {what}s{_suggest(name, list(allowed))}; "
                f"the study has: {', '.join(allowed) or 'none'}",
            )
    return tuple(v for v in value if v in allowed)


def _resolve_models(
    errors: _Errors, raw: Any, base: Path, models_file: Path | None
) -> tuple[list[ModelSpec], dict[str, str], list[str]]:
    """Model keys, replay:DIR folders (relative to the study file) and selectors such as {year: 2025}."""
    if not isinstance(raw, list) or not raw:
        errors.add(
            "models", "expected a non-empty list of model keys, replay:DIR folders or selectors such as {year: 2025}"
        )
        return [], {}, []
    try:
        catalog = load_models(models_file)
    except (ValueError, OSError) as exc:
        errors.add("models", str(exc))
        return [], {}, []
    picked: dict[str, ModelSpec] = {}
    args: dict[str, str] = {}
    warnings: list[str] = []
    for i, item in enumerate(raw):
        where = f"models[{i}]"
        if isinstance(item, str):
            arg = item
            if item.startswith(REPLAY_PREFIX):
                folder = Path(item[len(REPLAY_PREFIX) :].strip()).expanduser()
                arg = REPLAY_PREFIX + str(folder if folder.is_absolute() else (base / folder).resolve())
            elif item not in catalog:
                errors.add(
                    where,
                    f"unknown model {item!r}{_suggest(item, sorted(catalog))}; "
                    "see `llmseg models`, or use replay:DIR or a selector such as {year: 2025}",
                )
                continue
            try:
                spec = get_model(arg, models_file)
            except (LookupError, ValueError) as exc:
                errors.add(where, str(exc))
                continue
            if spec.key in args and args[spec.key] != arg:
                errors.add(
                    where,
                    f"two replay folders are both named {spec.key!r}; runs are tagged by the "
                    "folder's name, so rename one",
                )
                continue
            picked[spec.key], args[spec.key] = spec, arg
        elif isinstance(item, dict):
            unknown = [k for k in item if k not in SELECTOR_FIELDS]
            if unknown or not item:
                errors.add(where, f"a selector takes {', '.join(SELECTOR_FIELDS)}; got {item!r}")
                continue
            # Fixtures are recorded demo replies, not models: only a selector that asks for them gets them.
            want = {"fixture": False, **item}
            found = [m for m in catalog.values() if all(getattr(m, k) == v for k, v in want.items())]
            if not found:
                errors.add(where, f"selector {item!r} matches no model of the catalog (`llmseg models` lists them)")
            for m in found:
                picked.setdefault(m.key, m)
                args.setdefault(m.key, m.key)
        else:
            errors.add(where, f"expected a model key, replay:DIR or a selector mapping, got {item!r}")
    for m in picked.values():
        if m.provider == "none":
            warnings.append(f"{m.key} has no API: its jobs will fail; list its saved chat logs as replay:DIR instead")
    return list(picked.values()), args, warnings


def _resolve_datasets(errors: _Errors, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(d, str) for d in raw):
        errors.add("datasets", f"expected a non-empty list of dataset keys (see `llmseg datasets list`), got {raw!r}")
        return []
    out = []
    for i, key in enumerate(raw):
        try:
            out.append(get_dataset(key).key)
        except (LookupError, ValueError) as exc:
            errors.add(f"datasets[{i}]", exc.args[0] if exc.args else str(exc))
    if len(set(out)) != len(out):
        errors.add("datasets", "a dataset is listed twice")
    return out


def _resolve_repeats(
    errors: _Errors, raw: Any, models: tuple[str, ...], datasets: tuple[str, ...]
) -> tuple[int, dict[tuple[str, str], int]]:
    """`repeats: 3`, or {default: 1, per_model: {gpt-4o: 10, other: {count: 10, datasets: [brain]}}}."""
    if raw is None:
        return 1, {}
    if isinstance(raw, int) and not isinstance(raw, bool):
        return _int(errors, "repeats", raw) or 1, {}
    if not isinstance(raw, dict) or set(raw) - {"default", "per_model"}:
        errors.add("repeats", f"expected a number or a mapping with `default` and `per_model`, got {raw!r}")
        return 1, {}
    default = _int(errors, "repeats.default", raw.get("default", 1)) or 1
    per: dict[tuple[str, str], int] = {}
    per_model = raw.get("per_model") or {}
    if not isinstance(per_model, dict):
        errors.add("repeats.per_model", f"expected a mapping model -> count, got {per_model!r}")
        return default, per
    for model, value in per_model.items():
        where = f"repeats.per_model.{model}"
        if model not in models:
            errors.add(where, f"model {model!r} is not in the study's models{_suggest(str(model), list(models))}")
            continue
        if isinstance(value, dict):
            if set(value) - {"count", "datasets"} or "count" not in value:
                errors.add(where, f"expected {{count: N, datasets: [...]}}, got {value!r}")
                continue
            count = _int(errors, f"{where}.count", value["count"])
            on = _names(errors, f"{where}.datasets", value.get("datasets", "all"), datasets, "dataset")
        else:
            count, on = _int(errors, where, value), datasets
        for d in on:
            if count is not None:
                per[(model, d)] = count
    return default, per


def _resolve_budget(errors: _Errors, raw: Any, models: tuple[str, ...], datasets: tuple[str, ...]) -> list[BudgetRerun]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("budget_reruns", f"expected a list of {{epochs: N, datasets: [...]}}, got {raw!r}")
        return []
    out = []
    for i, item in enumerate(raw):
        where = f"budget_reruns[{i}]"
        if (
            not isinstance(item, dict)
            or "epochs" not in item
            or set(item) - {"epochs", "datasets", "models", "baseline"}
        ):
            errors.add(where, f"expected {{epochs: N, datasets: [...], models: all, baseline: false}}, got {item!r}")
            continue
        epochs = _int(errors, f"{where}.epochs", item["epochs"])
        on = _names(errors, f"{where}.datasets", item.get("datasets", "all"), datasets, "dataset")
        who = _names(errors, f"{where}.models", item.get("models", "all"), models, "model")
        baseline = item.get("baseline", False)
        if not isinstance(baseline, bool):
            errors.add(f"{where}.baseline", f"expected true or false, got {baseline!r}")
        if epochs is not None:
            out.append(BudgetRerun(epochs, on, who, baseline is True))
    return out


def _resolve_baselines(errors: _Errors, raw: Any, datasets: tuple[str, ...]) -> Baselines:
    if raw is None:
        return Baselines()
    if not isinstance(raw, dict) or set(raw) - {"datasets", *BASELINE_DEFAULTS}:
        errors.add("baselines", f"expected {{datasets: all, epochs: N, iterations: N}}, got {raw!r}")
        return Baselines()
    on = _names(errors, "baselines.datasets", raw.get("datasets", "all"), datasets, "dataset")
    budget = {k: _int(errors, f"baselines.{k}", raw.get(k, v)) or v for k, v in BASELINE_DEFAULTS.items()}
    return Baselines(on, **budget)


def _resolve_overrides(errors: _Errors, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.add("overrides", f"expected a mapping, e.g. {{max_batches: 5, epochs: 2}}, got {raw!r}")
        return {}
    out = {}
    for key, value in raw.items():
        kind = OVERRIDE_TYPES.get(key)
        if kind is None:
            errors.add(
                f"overrides.{key}",
                f"unknown setting{_suggest(str(key), list(OVERRIDE_TYPES))}; allowed: {', '.join(OVERRIDE_TYPES)}",
            )
        elif value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
            errors.add(f"overrides.{key}", f"expected {getattr(kind, '__name__', 'a number')}, got {value!r}")
        elif value is not None:
            out[key] = value
    return out


def find_study(path: Path) -> Path:
    """The study file: `path` as given, else a packaged study named by its bare name (`demo`, `paper.yaml`)."""
    path = Path(path).expanduser()
    if path.is_file() or path.parent != Path("."):
        return path
    packaged = STUDIES_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return packaged if packaged.is_file() else path


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
    errors = _Errors(path)
    if not isinstance(doc, dict):
        errors.add("top level", f"expected a mapping with {', '.join(TOP_LEVEL)}; got {type(doc).__name__}")
        errors.raise_if_any()
    for key in doc:
        if key not in TOP_LEVEL:
            errors.add(str(key), f"unknown field{_suggest(str(key), list(TOP_LEVEL))}; allowed: {', '.join(TOP_LEVEL)}")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip() or "'" in name:
        errors.add("name", f"expected the study's name (its MLflow experiment), got {name!r}")
    models, args, warnings = _resolve_models(errors, doc.get("models"), path.resolve().parent, models_file)
    keys = tuple(m.key for m in models)
    datasets = tuple(_resolve_datasets(errors, doc.get("datasets")))
    default, repeats = _resolve_repeats(errors, doc.get("repeats"), keys, datasets)
    budget = _resolve_budget(errors, doc.get("budget_reruns"), keys, datasets)
    baselines = _resolve_baselines(errors, doc.get("baselines"), datasets)
    overrides = _resolve_overrides(errors, doc.get("overrides"))
    errors.raise_if_any()
    return Study(
        name=name.strip(),
        path=path.resolve(),
        models=tuple(models),
        model_args=args,
        datasets=datasets,
        default_repeats=default,
        repeats=repeats,
        budget_reruns=tuple(budget),
        baselines=baselines,
        overrides=overrides,
        warnings=tuple(warnings),
    )
