"""The typed configuration layer: one pydantic base for every YAML schema and job config, and its error messages.

Each schema lives beside the code that uses it (datasets in catalog/datasets.py, a study in
sweep/study.py, ...); what they share is here: strict fields (YAML's `true` is not a number, `"3"`
is not an int), unknown keys refused with a suggestion, and ValidationErrors rewritten as
"where: what was expected, got what" lines a user can act on. Job defaults live once, here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_core import PydanticCustomError, core_schema

# Job limits: the paper's pipelines trained for minutes to hours; these bound one execution.
JOB_TIMEOUT_S = 3 * 3600.0
JOB_MEMORY_GB = 16.0
EVAL_TIMEOUT_S = 1800.0  # `llmseg evaluate` on its own; inside a job it follows the job's timeout

# Paths arrive as text from YAML and the command line: accepted as str or Path, stored as Path.
LoosePath = Annotated[Path, Field(strict=False)]


class ConfigError(ValueError):
    """Settings given in code or on the command line that do not fit their schema (every problem listed)."""


class Strict(BaseModel):
    """Base of every schema: frozen, strict types, unknown keys listed (with a suggestion) beside other problems."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", arbitrary_types_allowed=True)

    def __init__(self, **data: Any) -> None:
        # Keyword construction (job configs from the CLI, specs built in code) gets our message; YAML
        # loaders call model_validate and put the file and entry in front of problems() themselves.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(describe(exc, type(self).__name__)) from None

    # Only a wrapper: model_validate and nested models go straight to pydantic's validator (and keep
    # their validation context) instead of through this __init__.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="wrap")
    @classmethod
    def _known_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        allowed = field_names(cls)
        unknown = [k for k in data if k not in allowed] if isinstance(data, dict) else []
        if not unknown:
            return handler(data)
        errors: list[Any] = [
            {
                "type": "value_error",
                "loc": (str(k),),
                "input": data[k],
                "ctx": {"error": f"unknown field{suggest(str(k), allowed)}; allowed: {', '.join(allowed)}"},
            }
            for k in unknown
        ]
        try:
            handler({k: v for k, v in data.items() if k in allowed})
        except ValidationError as exc:
            # Re-raised together; an error type pydantic does not know (a custom one) is rebuilt as custom.
            errors += [
                e if e["type"] in _BUILTIN_TYPES else {**e, "type": PydanticCustomError(e["type"], e["msg"])}
                for e in exc.errors()
            ]
        raise ValidationError.from_exception_data(cls.__name__, errors)


def field_names(model: type[BaseModel]) -> list[str]:
    """The keys a YAML mapping may use for this model (aliases where set)."""
    return [f.alias or name for name, f in model.model_fields.items()]


def default_of(model: type[BaseModel], name: str) -> Any:
    """The one default of a field, for a CLI option or another schema that shows it."""
    return model.model_fields[name].get_default(call_default_factory=True)


def suggest(name: str, known: Iterable[str]) -> str:
    """' (did you mean a, b?)' for close matches, else ''."""
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "path_type": "a path",
}


def where(loc: Sequence[int | str], prefix: str = "") -> str:
    """('models', 0, 'year') -> 'models[0].year'."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "top level"


def _problem(err: Any) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "assertion_error":
        return err["msg"].removeprefix("Assertion failed, ")
    if kind == "missing":
        return "missing (required)"
    if kind == "literal_error":
        return f"got {got!r}, allowed values: {str(ctx.get('expected', '')).replace(chr(39), '')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "")
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        return f"expected a number {op} {bound}, got {got!r}"
    if kind in ("too_short", "too_long"):
        return f"expected {err['msg'].split('should have ')[-1]}, got {got!r}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {got!r}"
    return f"{err['msg']}, got {got!r}"


def _located(exc: ValidationError) -> list[tuple[str, str]]:
    """(where, problem) per error."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        # A union reports every branch; the location without the branch name is what the user wrote.
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _BRANCH_NAMES))]
        out.append((where(loc), _problem(err)))
    return out


def problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """One 'where: what is wrong' line per place (union branches that restate a type error merged);
    a problem of the mapping as a whole has no place in front."""
    lines: list[str] = []
    seen: set[str] = set()
    for place, what in _located(exc):
        place = f"{prefix}.{place}" if prefix and place != "top level" else prefix or place
        if place not in seen:
            seen.add(place)
            lines.append(what if place == "top level" else f"{place}: {what}")
    return lines


# Names pydantic gives union branches in a location (skipped when we print where the problem is).
_BUILTIN_TYPES = set(core_schema.ErrorType.__args__)  # type: ignore[attr-defined]
_BRANCH_NAMES = {"str", "int", "float", "bool", "list", "dict", "tuple", "function-after", "function-before"}


def describe(exc: ValidationError, heading: str, prefix: str = "") -> str:
    """A heading, then every problem on its own indented line."""
    lines = problems(exc, prefix)
    return f"{heading} has {len(lines)} problem(s):\n" + "\n".join(f"  {line}" for line in lines)


# ---- job configs: what the CLI, MLproject and a study's overrides set -----------------------------

# "auto": the pipeline's own Dataset where possible; "generic": resize + [0, 1].
Preprocessing = Literal["auto", "generic"]


class GenerateConfig(Strict):
    """Everything one `generate` call needs; paths default under LLMSEG_HOME (~/.llmseg)."""

    model: str = Field(description="Catalog key (see `llmseg models`) or replay:DIR.")
    dataset: str = Field(description="Catalog key (see `llmseg datasets list`).")
    repeat: int = Field(default=1, ge=1, description="Repeat number (repeats never share replies).")
    study: str = Field(default="llmseg", description="Study (MLflow experiment and `study` tag).")
    epochs: int | None = Field(default=None, ge=1, description="Force the epoch count; unset keeps the LLM's choice.")
    max_batches: int | None = Field(default=None, ge=1, description="Cap batches per epoch of every DataLoader.")
    max_fix_rounds: int = Field(default=10, ge=0, description="Error feedback rounds before giving up.")
    stuck_after: int = Field(
        default=3,
        ge=0,
        description="The same error (type, place in the code, message) this many times in a row is a repeated "
        "error loop: the pipeline ends stuck_loop, or gets --loop-hint once. 0: never.",
    )
    # Instead of ending stuck_loop, send one supplementary message ("default": the documented text).
    loop_hint: str | None = None
    timeout_s: float = Field(default=JOB_TIMEOUT_S, gt=0, description="Wall-clock limit of one execution.")
    memory_gb: float = Field(
        default=JOB_MEMORY_GB, gt=0, description="Memory cap of one execution (tmpfs and shared memory included)."
    )
    disk_gb: float | None = Field(default=None, gt=0)  # the attempt folder's cap; None: max(20 GB, 10x the pool)
    eval_timeout_s: float | None = Field(default=None, gt=0)  # None: a quarter of timeout_s, at least 300 s
    data_root: LoosePath | None = None
    work_root: LoosePath | None = None
    unsafe_no_sandbox: bool = False
    preflight: bool = True
    models_file: LoosePath | None = None  # user's model YAML (else $LLMSEG_MODELS_FILE)
    no_cache: bool = False  # force fresh LLM calls (the replies are still stored)
    cache_dir: LoosePath | None = None  # default $LLMSEG_CACHE_DIR or $LLMSEG_HOME/cache
    evaluate: bool = True  # held-out evaluation after a successful training
    eval_preprocessing: Preprocessing = "auto"


class TrainConfig(Strict):
    """`llmseg train`: which pipeline to re-run and with how many epochs."""

    run_id: str = Field(description="The pipeline whose final code is re-trained.")
    epochs: int | None = Field(
        default=None, ge=1, description="The forced epoch budget (the paper used 120); unset: the code's own."
    )
    seed: int | None = Field(default=None, ge=0)  # seeds Python, NumPy and torch first (the code's own seed wins)
    study: str | None = Field(default=None, description="Study of the new run (default: the source's).")
    max_batches: int | None = Field(default=None, ge=1, description="Cap batches per epoch.")
    timeout_s: float = Field(default=JOB_TIMEOUT_S, gt=0, description="Wall-clock limit of the training.")
    memory_gb: float = Field(default=JOB_MEMORY_GB, gt=0, description="Memory cap of the training.")
    data_root: LoosePath | None = None
    work_root: LoosePath | None = None
    unsafe_no_sandbox: bool = False
    evaluate: bool = True
    eval_preprocessing: Preprocessing = "auto"


class RefineConfig(Strict):
    """`llmseg refine`: rounds of results fed back into a pipeline's conversation (same limits as its root)."""

    run_id: str = Field(description="The pipeline root whose conversation continues.")
    rounds: int = Field(
        default=1, ge=1, description="Rounds the pipeline should have in all: a second refine continues from the last."
    )
    budget_minutes: float | None = Field(default=None, gt=0, description="Start no new round after this many minutes.")
    model: str | None = Field(
        default=None, description="The model that continues (default: the root's; a moved replay folder: replay:DIR)."
    )
    feedback: str = Field(default="default", description="default (prompts/refine_feedback.md) or a template file.")
    show_baseline: bool = False  # put nnU-Net's validation Dice on the same pool into the feedback
    preflight: bool = True
    models_file: LoosePath | None = None
    data_root: LoosePath | None = None
    work_root: LoosePath | None = None
    cache_dir: LoosePath | None = None
    no_cache: bool = False
    unsafe_no_sandbox: bool = False
    evaluate: bool = True
    eval_preprocessing: Preprocessing = "auto"


class EvaluateConfig(Strict):
    """`llmseg evaluate`: which pipeline, how."""

    run_id: str = Field(description="A pipeline root run (kind=pipeline).")
    preprocessing: Preprocessing = Field(
        default="auto", description="auto: the pipeline's own Dataset where possible; generic: resize + [0, 1]."
    )
    data_root: LoosePath | None = None
    unsafe_no_sandbox: bool = False
    timeout_s: float = Field(default=EVAL_TIMEOUT_S, gt=0, description="Wall-clock limit of the inference.")
    memory_gb: float = Field(default=JOB_MEMORY_GB, gt=0, description="Memory cap of the inference.")


class PredictConfig(Strict):
    """`llmseg predict`: masks for a folder of images from a logged pipeline."""

    model: str = Field(
        description="models:/llmseg-<dataset>@champion, models:/<logged model id>, or a downloaded model folder."
    )
    images: LoosePath = Field(description="Folder of images to segment (png, jpg, tif, bmp).")
    out: LoosePath = Field(description="Folder for the masks: one PNG (0/255) per image, same name.")
    unsafe_no_sandbox: bool = False
    timeout_s: float = Field(default=EVAL_TIMEOUT_S, gt=0, description="Wall-clock limit of the inference.")
    memory_gb: float = Field(default=JOB_MEMORY_GB, gt=0, description="Memory cap of the inference.")


# GPU default budget: 100 epochs x 250 iterations (nnU-Net's iterations per epoch, a tenth of its 1000
# epochs): 25k steps at batch size ~12-50 is about half an hour of 2d training on one modern GPU, in
# the range of what the LLM pipelines train for, while nnU-Net's poly schedule still decays to zero.
GPU_EPOCHS = 100
GPU_ITERATIONS = 250


class BaselineConfig(Strict):
    """One nnU-Net baseline; paths default under LLMSEG_HOME (~/.llmseg)."""

    dataset: str = Field(description="Catalog key (see `llmseg datasets list`).")
    study: str = Field(default="llmseg", description="Study (MLflow experiment and `study` tag).")
    epochs: int = Field(default=GPU_EPOCHS, description="Training epochs (the GPU budget, docs/baseline.md).")
    iterations: int = Field(default=GPU_ITERATIONS, description="Training iterations per epoch (nnU-Net's).")
    data_root: LoosePath | None = None
    work_root: LoosePath | None = None  # nnU-Net's folders go to <work_root>/<run_id> (default $LLMSEG_HOME/baselines)
    repeat: int = Field(default=1, ge=1, description="Repeat number.")
    fold: int | str = 0  # fold 0 of nnU-Net's 5-fold split of the pool: a real validation set for checkpoint_best
    val_iterations: int | None = None  # default: iterations / 5, nnU-Net's own ratio (250 : 50)
    device: str | None = None  # "cuda" or "cpu"; default: cuda when available
    log_checkpoint: bool = False  # upload checkpoint_best.pth (tens of MB) as an artifact
    timeout_s: float = 7 * 24 * 3600  # nnU-Net's full 1000-epoch schedule takes days on one GPU
    memory_gb: float | None = None  # None: nine tenths of the machine's memory
