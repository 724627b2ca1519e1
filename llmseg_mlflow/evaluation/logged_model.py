"""A trained pipeline as an MLflow LoggedModel: weights, the code as run, how the evaluator fed it, held-out metrics.

The model folder (what `models:/...` downloads):

    MLmodel                     python_function (sandboxed: llmseg_mlflow.predict) and, when the module
                                could be pickled, pytorch (runs the generated code in the caller's process)
    data/pipeline/llmseg.json   the ModelCard: dataset layout, input size, channels, output, preprocessing
    data/pipeline/code/         dataset.py, model.py, train.py, main.py as the pipeline ran them
    data/pipeline/weights/      model.pth (the whole module, pickled in the sandbox) or the checkpoint the
                                evaluator loaded, at its path
    input_example.json, requirements.txt, ...

Everything in it was written by the harness except the weights, which the sandbox wrote and which are
copied through `untrusted` with a size cap.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.tracking import MlflowClient
from PIL import Image

from llmseg_mlflow import untrusted
from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.evaluation.evaluator import int_or_none
from llmseg_mlflow.tracking.runs import RunLogger

CARD = "llmseg.json"
PIPELINE = "data/pipeline"  # inside the model folder: the pyfunc flavor's data
LOADER = "llmseg_mlflow.predict"  # the pyfunc loader module: predicts in the sandbox
WEIGHTS_CAP = 4 * 1024**3  # a pickled module or checkpoint larger than this is not logged
EXAMPLE_SIDE = 64  # the input example is the first held-out image, cut to at most this many pixels a side
REQUIREMENTS = ("llmseg-mlflow", "torch", "numpy", "pillow")


@dataclass(frozen=True)
class ModelCard:
    """What predicting with a logged pipeline needs besides its code and weights (`llmseg.json`)."""

    kind: str  # "llm" (generated code, sandboxed) or "nnunet"
    dataset: str
    data_digest: str
    images_dir: str  # where the pipeline's Dataset finds images, relative to the data folder ("." for suffix)
    masks_dir: str
    image_ext: str
    mask_ext: str
    mask_suffix: str
    in_channels: int
    input_size: int | None
    final_activation: str
    output: str  # what the network returns: logits or probabilities (as the evaluator found)
    preprocessing: str  # own (the pipeline's Dataset) or generic (resize + [0, 1]), as the evaluator used
    weights: str  # file under weights/: model.pth (whole module) or the checkpoint's own path
    whole_module: bool  # weights/model.pth is a pickled nn.Module (the pytorch flavor is there)
    volumes: bool = False  # trained on slices of volumes: `predict` on plain images is refused
    version: int = 1

    @property
    def eval_preprocessing(self) -> str:
        """The evaluator's setting that feeds the model as its evaluation did (`own` succeeds again under auto)."""
        return "auto" if self.preprocessing == "own" else "generic"

    def to_json(self) -> str:
        """The card as written into the model folder."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """The card of a downloaded model folder; ValueError when it is not one of ours."""
        card = path / PIPELINE / CARD
        if not card.is_file():
            raise ValueError(f"{path} is not an llmseg pipeline model (no {PIPELINE}/{CARD})")
        fields = json.loads(card.read_text())
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})


class _DataFields(TypedDict):
    dataset: str
    data_digest: str
    images_dir: str
    masks_dir: str
    image_ext: str
    mask_ext: str
    mask_suffix: str
    volumes: bool


def _data_fields(data: PreparedDataset) -> _DataFields:
    """What a card says of the prepared dataset: its key, digest and how the held-out files are laid out."""
    spec, base = data.spec, data.heldout
    return {
        "dataset": spec.key,
        "data_digest": data.digest,
        "images_dir": str(spec.images_dir(base).relative_to(base)),
        "masks_dir": str(spec.masks_dir(base).relative_to(base)),
        "image_ext": spec.image_ext,
        "mask_ext": spec.mask_ext,
        "mask_suffix": spec.mask_suffix,
        "volumes": data.volumes,
    }


def card_for(data: PreparedDataset, info: dict[str, object], hyper: dict[str, str], whole: bool) -> ModelCard:
    """The card of an LLM pipeline from the evaluator's findings (info.json) and the code's hyperparameters."""
    return ModelCard(
        kind="llm",
        in_channels=int(info.get("eval_input_channels") or 1),  # type: ignore[call-overload]
        input_size=int_or_none(hyper.get("input_size")),
        final_activation=hyper.get("final_activation", "none"),
        output=str(info.get("eval_output", "logits")),
        preprocessing="own" if info.get("eval_preprocessing") == "own" else "generic",
        weights="model.pth" if whole else str(info.get("eval_checkpoint", "")),
        whole_module=whole,
        **_data_fields(data),
    )


def nnunet_card(data: PreparedDataset, channels: int, fold: int | str, checkpoint: str) -> ModelCard:
    """The card of an nnU-Net baseline: its own preprocessing (plans), label maps out."""
    return ModelCard(
        kind="nnunet",
        in_channels=channels,
        input_size=None,
        final_activation="softmax",
        output="labels",
        preprocessing="nnunet",
        weights=f"fold_{fold}/{checkpoint}",
        whole_module=False,
        **_data_fields(data),
    )


def write_nnunet_dir(
    dest: Path, card: ModelCard, model_folder: Path, extra: list[Path], example: np.ndarray | None
) -> Path:
    """The MLflow model folder of a trained nnU-Net: its plans, dataset.json and the checkpoint it predicted
    with, as nnU-Net's trained-model folder (nnUNetPredictor.initialize_from_trained_model_folder reads it)."""
    files = {card.weights: model_folder / card.weights} | {p.name: p for p in extra}
    return _write(dest, card, {}, files, example)


def write_model_dir(
    dest: Path, card: ModelCard, code: dict[str, str], weights: Path, example: np.ndarray | None
) -> Path:
    """The MLflow model folder of an LLM pipeline at dest (created); `weights` is copied as card.weights."""
    return _write(dest, card, code, {card.weights: weights}, example)


def _write(
    dest: Path, card: ModelCard, code: dict[str, str], weights: dict[str, Path], example: np.ndarray | None
) -> Path:
    import mlflow.pyfunc
    from mlflow.models import Model, ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    stage = Path(tempfile.mkdtemp(prefix="llmseg-model-")) / "pipeline"
    try:
        (stage / "code").mkdir(parents=True)
        for name, text in code.items():
            (stage / "code" / name).write_text(text)
        for rel, src in weights.items():  # what the sandbox wrote is read with a cap and no links followed
            target = stage / "weights" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(untrusted.read_bytes(src, WEIGHTS_CAP))
        if card.whole_module:  # mlflow.pytorch.load_model reads the pickle module's name here
            (stage / "weights" / "pickle_module_info.txt").write_text("pickle")
        (stage / CARD).write_text(card.to_json())
        channels = card.in_channels
        signature = ModelSignature(
            Schema([TensorSpec(np.dtype("uint8"), (-1, -1, -1, channels))]),  # unnamed: predict gets the array
            Schema([TensorSpec(np.dtype("uint8"), (-1, -1, -1))]),
        )
        mlflow.pyfunc.save_model(
            str(dest),
            loader_module=LOADER,
            data_path=str(stage),
            signature=signature,
            input_example=example,
            pip_requirements=[_pinned(r) for r in REQUIREMENTS],
        )
    finally:
        shutil.rmtree(stage.parent, ignore_errors=True)
    if card.whole_module:
        model = Model.load(dest / "MLmodel")
        model.add_flavor(
            "pytorch",
            model_data=f"{PIPELINE}/weights",
            pytorch_version=importlib.metadata.version("torch"),
            code=f"{PIPELINE}/code",
        )
        model.save(dest / "MLmodel")
    return dest


def example_image(data: PreparedDataset, channels: int) -> np.ndarray | None:
    """The first held-out image as a (1, H, W, C) uint8 batch, cut to EXAMPLE_SIDE pixels a side."""
    pairs = data.heldout_pairs()
    if not pairs:
        return None
    image = np.asarray(Image.open(pairs[0][0]))
    if image.dtype != np.uint8:
        return None  # 16-bit or float sources: no example rather than a lossy one
    image = image[:EXAMPLE_SIDE, :EXAMPLE_SIDE]
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[-1] != channels:
        return None
    return image[None]


def _pinned(package: str) -> str:
    try:
        return f"{package}=={importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


@dataclass
class PipelineModel:
    """A LoggedModel being logged for one evaluated pipeline: created first, so the held-out metrics can
    name it, then given its files and finalized."""

    client: MlflowClient
    model_id: str
    dataset: tuple[str, str]  # (name, digest) of the held-out dataset input the metrics are on
    runs: tuple[str, ...]  # the runs that list it under "Logged models" (the root and its training run)

    @classmethod
    def create(
        cls,
        client: MlflowClient,
        experiment_id: str,
        training_run_id: str,
        name: str,
        tags: dict[str, str],
        card: ModelCard,
        root_run_id: str,
    ) -> PipelineModel:
        """A PENDING LoggedModel linked to its training run, its params the card's."""
        params = {k: str(v) for k, v in asdict(card).items() if v is not None}
        model = client.create_logged_model(
            experiment_id,
            name=name,
            source_run_id=training_run_id,
            tags=tags,
            params=params,
            model_type="llm-pipeline" if card.kind == "llm" else "nnunet",
        )
        dataset = (f"{card.dataset}-heldout", f"{card.data_digest[:16]}-heldout")  # the dataset input's name/digest
        return cls(client, model.model_id, dataset, (root_run_id, training_run_id))

    def finish(self, model_dir: Path) -> None:
        """Upload the folder, mark the model READY and list it as an output of its runs (the UI's 'Logged models')."""
        self.client.log_model_artifacts(self.model_id, str(model_dir))
        self.client.finalize_logged_model(self.model_id, LoggedModelStatus.READY)
        for run_id in self.runs:
            self.client.log_outputs(run_id, [LoggedModelOutput(self.model_id, 0)])

    def fail(self) -> None:
        """Mark the model FAILED (its metrics stay; nothing can load it)."""
        self.client.finalize_logged_model(self.model_id, LoggedModelStatus.FAILED)


def finish_logging(
    model: PipelineModel | None,
    build: Callable[[Path], Path],
    root: RunLogger,
    progress: Callable[[str], None],
) -> None:
    """Build the model folder (in a temporary place), upload it, link the model to its runs and tag the root
    with `logged_model_id`; on any failure the model is FAILED and the job goes on (its metrics stay)."""
    if model is None:
        return
    with tempfile.TemporaryDirectory(prefix="llmseg-logged-model-") as tmp:
        try:
            model.finish(build(Path(tmp) / "model"))
        except Exception as exc:  # noqa: BLE001 - a model that cannot be packaged must not cost the evaluation
            progress(f"logging the model failed: {type(exc).__name__}: {str(exc)[:300]}")
            with contextlib.suppress(Exception):
                model.fail()
            return
    root.tags({"logged_model_id": model.model_id})
    progress(f"logged model {model.model_id} (models:/{model.model_id})")
