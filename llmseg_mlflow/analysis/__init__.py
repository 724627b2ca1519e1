"""`analyze`: the paper's tables and figures (and more) from the tracking server, in one HTML report."""

from typing import Any

from llmseg_mlflow.analysis.config import AnalyzeConfig

__all__ = ["AnalyzeConfig", "run_analyze"]


def __getattr__(name: str) -> Any:
    # run_analyze pulls in pandas, matplotlib and MLflow: imported when asked for, so the CLI starts fast.
    if name == "run_analyze":
        from llmseg_mlflow.analysis.run import run_analyze

        return run_analyze
    raise AttributeError(name)
