"""A study's experiment opens on its training runs in the MLflow UI, and its roots say where they came from."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from llmseg_mlflow.tracking.runs import EXPERIMENT_KIND, MODEL_DEVELOPMENT, RunTree
from llmseg_mlflow.tracking.schema import Cohort


def _cohort(study: str) -> Cohort:
    return Cohort("gpt-4o", 2024, False, "bagls", 1, study, "openai-compatible")


def test_a_new_study_is_marked_model_development_and_roots_carry_source_and_name(tracking):
    client = MlflowClient()
    tree = RunTree.open(client, _cohort("t-exp-kind"))
    exp = client.get_experiment_by_name("t-exp-kind")
    assert exp.tags[EXPERIMENT_KIND] == MODEL_DEVELOPMENT  # not the GenAI view the traces would imply
    root = client.get_run(tree.root.run_id)
    assert root.info.run_name == "gpt-4o/bagls/r1"  # model and dataset lead, as the runs table shows them
    assert root.data.tags["mlflow.source.name"] == "llmseg-mlflow" and root.data.tags["mlflow.source.type"] == "LOCAL"


def test_an_existing_experiment_gets_the_kind_once_and_a_users_kind_is_kept(tracking):
    client = MlflowClient()
    plain = client.create_experiment("t-exp-plain")
    chosen = client.create_experiment("t-exp-chosen", tags={EXPERIMENT_KIND: "genai_development"})
    RunTree.open(client, _cohort("t-exp-plain"))
    RunTree.open(client, _cohort("t-exp-chosen"))
    assert client.get_experiment(plain).tags[EXPERIMENT_KIND] == MODEL_DEVELOPMENT
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND] == "genai_development"
