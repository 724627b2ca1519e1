"""The catalog and data commands of `llmseg` (generate and demo have their own end-to-end tests)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from llmseg_mlflow.cli import main


def test_models_lists_the_paper_models_and_fixtures():
    text = CliRunner().invoke(main, ["models"]).output
    assert "claude-4-sonnet" in text and "gpt-o4-mini-high" in text and "demo-2024-a" in text
    models = json.loads(CliRunner().invoke(main, ["models", "--json"]).output)
    by_key = {m["key"]: m for m in models}
    assert by_key["deepseek-r1"]["reasoning"] is True and by_key["gpt-4o"]["year"] == 2024


def test_datasets_list_and_prepare(tmp_path):
    listing = json.loads(CliRunner().invoke(main, ["datasets", "list", "--json"]).output)
    assert {"bagls", "synthetic-gray-suffix", "synthetic-gray-folders", "synthetic-rgb-folders"} <= {
        d["key"] for d in listing
    }
    result = CliRunner().invoke(main, ["datasets", "prepare", "synthetic-gray-folders", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output.strip().splitlines()[-1])
    root = tmp_path / "synthetic-gray-folders"
    assert info["root"] == str(root) and len(info["digest"]) == 64
    assert (root / "pool" / "images").is_dir() and (root / "heldout" / "masks").is_dir()
    n_heldout = len(list((root / "heldout" / "images").iterdir()))
    assert n_heldout == len(list((root / "pool" / "images").iterdir())) // 9  # 10% of 100


def test_prepare_real_dataset_without_source_says_what_to_do(tmp_path):
    result = CliRunner().invoke(main, ["datasets", "prepare", "bagls", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--source" in result.output


def test_unknown_dataset_lists_names(tmp_path):
    result = CliRunner().invoke(main, ["datasets", "prepare", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "synthetic-rgb-folders" in result.output
