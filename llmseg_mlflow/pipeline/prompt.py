"""The Appendix D prompt: a template in llmseg_mlflow/prompts/, filled from a dataset entry, versioned in MLflow."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmseg_mlflow.tracking.runs import lost_creation_race

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PROMPT_NAME = "llmseg-appendix-d"
_VAR = re.compile(r"{{\s*(\w+)\s*}}")
# The bracketed "[and do NOT duplicate or copy to new directory]" of the paper's prompt.
_DEFAULT_FILLS = {"copy_instruction": "and do NOT duplicate or copy to new directory"}


def template_path() -> Path:
    """The packaged llmseg_mlflow/prompts/appendix_d.md, or $LLMSEG_PROMPT_FILE."""
    override = os.environ.get("LLMSEG_PROMPT_FILE")
    return Path(override) if override else Path(__file__).resolve().parents[1] / "prompts" / "appendix_d.md"


def load_template() -> str:
    """The template text with its {{variables}}."""
    path = template_path()
    if not path.exists():
        raise FileNotFoundError(f"prompt template {path} not found; set LLMSEG_PROMPT_FILE to a template file")
    return path.read_text()


def render(template: str, fills: dict[str, str]) -> str:
    """Fill every {{variable}}; a missing fill is an error naming it."""
    values = {**_DEFAULT_FILLS, **fills}
    missing = sorted({m for m in _VAR.findall(template) if m not in values})
    if missing:
        raise ValueError(
            f"prompt template needs fills for {', '.join(missing)}; add them to the dataset's `prompt:` entry"
        )
    return _VAR.sub(lambda m: str(values[m.group(1)]), template)


@dataclass(frozen=True)
class RegisteredPrompt:
    """A prompt template version in MLflow's prompt registry."""

    name: str
    version: int
    template: str

    @property
    def uri(self) -> str:
        """prompts:/name/version."""
        return f"prompts:/{self.name}/{self.version}"


def register(
    template: str,
    name: str = PROMPT_NAME,
    message: str = "Appendix D prompt template",
    source: str = "Arjomandi et al. 2026, Appendix D",
) -> RegisteredPrompt:
    """Register the template unless the latest version already holds this exact text."""
    import mlflow.genai
    from mlflow.exceptions import MlflowException

    for attempt in range(3):
        try:
            latest = mlflow.genai.load_prompt(f"prompts:/{name}@latest", link_to_model=False)
            if latest.template == template:
                return RegisteredPrompt(name, _first_of_run(name, template, int(latest.version)), template)
        except MlflowException:
            pass  # first registration
        try:
            version = mlflow.genai.register_prompt(
                name,
                template,
                commit_message=message,
                tags={"source": source},
            )
            return RegisteredPrompt(name, _first_of_run(name, template, int(version.version), own=True), template)
        except MlflowException as exc:
            # Parallel sweep workers on a fresh server: another one created the prompt first; look again.
            if not lost_creation_race(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _first_of_run(name: str, template: str, version: int, own: bool = False) -> int:
    """The first of the unbroken run of versions holding template that ends at `version` (deleted ones skipped).

    Parallel writers on a fresh server each register the same text: all of them use the first version,
    and a writer whose own new version (`own`) is a later one deletes it.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    first = version
    for earlier in range(version - 1, 0, -1):
        try:
            held = client.get_prompt_version(name, earlier)
        except MlflowException:  # deleted by its writer
            continue
        if held is None:
            continue
        if held.template != template:
            break
        first = earlier
    if own and first < version:
        try:
            client.delete_prompt_version(name, str(version))
        except Exception:  # noqa: BLE001 - a duplicate left behind is harmless: every writer uses `first`
            pass
    return first


def link(client: MlflowClient, uri: str, *run_ids: str) -> None:
    """Link a registered prompt version to runs: their tag `mlflow.linkedPrompts`, the UI's "Registered prompts"."""
    for run_id in run_ids:
        client.link_prompt_version_to_run(run_id, uri)
