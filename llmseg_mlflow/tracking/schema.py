"""Names of the run tree's kinds, tags, statuses and summary fields: the contract analysis relies on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """The `kind` tag of each run in a pipeline tree."""

    LAUNCH = "launch"  # the run `mlflow run` started; the pipeline root is nested under it
    PIPELINE = "pipeline"
    GENERATION = "generation"
    DEBUG = "debug"
    TRAINING = "training"
    EVALUATION = "evaluation"
    REFINEMENT = "refinement"  # one round of `refine`: its own generation, debug, training, evaluation children
    ANALYSIS = "analysis"


class Status(str, Enum):
    """The `status` tag on a pipeline root: how the pipeline ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    GAVE_UP = "gave_up"  # fix rounds exhausted while the code still failed
    NO_CODE = "no_code"  # gave up and the last reply still held no usable code
    FAILED_TRAINING = "failed_training"  # main.py exited 0 but left no readable loss files
    HARNESS_ERROR = "harness_error"  # the platform itself failed (LLM call, tracking, ...): run FAILED
    DISK_QUOTA = "disk_quota"  # gave up, and the last attempt filled its folder past --disk-gb
    STUCK_LOOP = "stuck_loop"  # the same error came back N times in a row (the paper's "repeated error loop")
    EVALUATION_FAILED = (
        "evaluation_failed"  # trained, but the held-out evaluation failed: run FAILED, tag evaluation_error
    )


# Tags present on every run of a tree: the MLflow UI filters children by their own tags only.
COHORT_TAGS = ("model", "year", "reasoning", "dataset", "repeat", "study", "kind", "provider")

# Root params for what the LLM chose (paper Tables 1-2): the first seven read from the code by the knob
# locator, the network's from the network built at its input size (pipeline/inspection.py), the final
# activation from model.py. params_total is a metric.
HYPERPARAMETERS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "loss",
    "input_size",
    "encoder_stages",
    "decoder_stages",
    "conv_block",
    "encoder_channels",
    "decoder_channels",
    "bottleneck_channels",
    "final_layer",
    "final_activation",
)

# Root summary metrics.
SUMMARY_METRICS = (
    "errors_total",
    "debug_iterations",
    "heldout_dice_mean",
    "heldout_dice_median",
    "train_time_s",
    "params_total",
    "tokens_in",
    "tokens_out",
    "cost_usd",
)

# Per-epoch curves, logged with step = epoch on the training run and on the root.
CURVES = ("train_loss", "val_loss", "val_dice")

# Pseudo exception types for failures that have no Python exception class.
TIMEOUT = "Timeout"
OUT_OF_MEMORY = "OutOfMemory"
NO_CODE = "NoCodeError"
KILLED = "Killed"
TOO_MANY_PROCESSES = "TooManyProcesses"
DISK_QUOTA = "DiskQuota"


@dataclass(frozen=True)
class Cohort:
    """The identity of one pipeline: the tags every run of its tree carries."""

    model: str
    year: int | None
    reasoning: bool | None
    dataset: str
    repeat: int
    study: str
    provider: str

    def tags(self, kind: Kind) -> dict[str, str]:
        """Tags for a run of this pipeline's tree (empty string where a value is unknown)."""
        return {
            "model": self.model,
            "year": "" if self.year is None else str(self.year),
            "reasoning": "" if self.reasoning is None else str(self.reasoning).lower(),
            "dataset": self.dataset,
            "repeat": str(self.repeat),
            "study": self.study,
            "kind": kind.value,
            "provider": self.provider,
        }

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Cohort:
        """The cohort a run's tags describe (inverse of `tags`)."""
        year, reasoning = tags.get("year", ""), tags.get("reasoning", "")
        return cls(
            model=tags["model"],
            year=int(year) if year else None,
            reasoning=None if reasoning == "" else reasoning == "true",
            dataset=tags["dataset"],
            repeat=int(tags.get("repeat", "1")),
            study=tags.get("study", ""),
            provider=tags.get("provider", ""),
        )

    @property
    def run_name(self) -> str:
        """The root run's name: `{model}/{dataset}/r{repeat}`."""
        return f"{self.model}/{self.dataset}/r{self.repeat}"
