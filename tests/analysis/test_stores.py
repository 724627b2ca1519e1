"""The same study on PostgreSQL behind a 4-worker server, written by 8 threads at once, analyzes to the
same tables as on the session's sqlite server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from tests.analysis.conftest import analyze_defaults, write_study
from tests.conftest import running_mlflow_server

PER_STORE = ("experiment_id", "artifact_uri", "start_time")  # where and when each store put the run


def _run_names(uri: str, study: str) -> dict[str, str]:
    """Each run id of the study -> what it is (the same on any store): kind, model, dataset, repeat, budget."""
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id], max_results=5000)
    fields = ("kind", "model", "dataset", "repeat", "budget", "baseline")
    return {r.info.run_id: "/".join(r.data.tags.get(f, "") for f in fields) for r in runs}


def _tables(index: Path, names: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Every CSV of the report with run ids (minted by each store) replaced by what the run is, rows in a
    fixed order."""
    out = {}
    for path in sorted(index.parent.rglob("*.csv")):
        table = pd.read_csv(path).drop(columns=list(PER_STORE), errors="ignore")
        for column in [c for c in table.columns if pd.api.types.is_string_dtype(table[c])]:
            table[column] = table[column].map(lambda v: names.get(v, v))
        out[str(path.relative_to(index.parent))] = table.sort_values(list(table.columns)).reset_index(drop=True)
    return out


def test_postgres_with_four_workers_gives_the_same_tables(default_report, study, postgres, shared_home, tmp_path):
    with running_mlflow_server(tmp_path / "server", postgres.create_database("same_tables"), workers=4) as uri:
        on_pg = write_study(uri, shared_home, threads=8)
        roots = [r for r in _run_names(uri, on_pg.name).values() if r.startswith("pipeline/")]
        assert len(roots) == len(set(roots)) == len(on_pg.pipelines)  # none lost, none twice
        report = analyze_defaults(on_pg, shared_home, tmp_path / "analysis")
        pg_tables = _tables(report, _run_names(uri, on_pg.name))
    sqlite_tables = _tables(default_report, _run_names(study.uri, study.name))
    assert sqlite_tables.keys() == pg_tables.keys() and len(sqlite_tables) >= 10
    for name, table in sqlite_tables.items():
        assert set(pg_tables[name].columns) == set(table.columns), name
        pd.testing.assert_frame_equal(pg_tables[name], table, obj=name)
