"""Artifact downloads on a real server: straight from the artifact proxy when the URI is known, by run id otherwise."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from llmseg_mlflow.analysis.fetch import download, sibling_artifact_uri


def _root_and_child(tmp_path: Path) -> tuple[MlflowClient, object, object]:
    client = MlflowClient()
    exp = client.create_experiment(f"fetch-{tmp_path.name}")
    root = client.create_run(exp)
    child = client.create_run(exp, tags={"mlflow.parentRunId": root.info.run_id})
    src = tmp_path / "src" / "predictions.npz"
    src.parent.mkdir()
    src.write_bytes(b"the child's predictions")
    client.log_artifact(child.info.run_id, str(src), "heldout")
    return client, root, child


def test_a_childs_artifact_uri_follows_from_its_roots(tracking, tmp_path):
    client, root, child = _root_and_child(tmp_path)
    derived = sibling_artifact_uri(root.info.artifact_uri, root.info.run_id, child.info.run_id)
    assert derived == client.get_run(child.info.run_id).info.artifact_uri
    assert sibling_artifact_uri("s3://bucket/elsewhere", root.info.run_id, child.info.run_id) is None


def test_download_is_served_from_the_proxy_when_the_uri_is_known(tracking, tmp_path):
    client, root, child = _root_and_child(tmp_path)
    uri = sibling_artifact_uri(root.info.artifact_uri, root.info.run_id, child.info.run_id)
    # A run id the server does not know: only the proxy path can find the file.
    got = download(client, "0" * 32, "heldout/predictions.npz", tmp_path / "direct", uri)
    assert got is not None and got.read_bytes() == b"the child's predictions"


def test_download_falls_back_to_the_run_id_where_the_uri_is_wrong(tracking, tmp_path):
    client, root, child = _root_and_child(tmp_path)
    wrong = f"mlflow-artifacts:/999999/{child.info.run_id}/artifacts"  # another experiment's layout
    got = download(client, child.info.run_id, "heldout/predictions.npz", tmp_path / "fallback", wrong)
    assert got is not None and got.read_bytes() == b"the child's predictions"
    assert download(client, child.info.run_id, "heldout/missing.npz", tmp_path / "none", wrong) is None
    assert (
        download(client, child.info.run_id, "heldout/predictions.npz", tmp_path / "plain").read_bytes()
        == b"the child's predictions"
    )
