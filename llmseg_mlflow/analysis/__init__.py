"""`analyze`: the paper's tables and figures (and more) from the tracking server, in one HTML report."""

from llmseg_mlflow.analysis.config import AnalyzeConfig
from llmseg_mlflow.analysis.run import run_analyze

__all__ = ["AnalyzeConfig", "run_analyze"]
