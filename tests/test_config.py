"""The typed configuration layer: strict fields, messages that say where and what, one copy of each default."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import Field

from llmseg_mlflow import config
from llmseg_mlflow.cli import main
from llmseg_mlflow.config import ConfigError, GenerateConfig, Strict, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


class _Sub(Strict):
    n: int = Field(default=100, ge=2)
    size: int = 64


class _Doc(Strict):
    name: str
    year: int | None = None
    reasoning: bool = False
    sub: _Sub | None = None


def test_every_problem_is_listed_with_where_and_what():
    with pytest.raises(ConfigError) as caught:
        _Doc(name=3, year=True, reasoning="yes", sub={"n": 1})
    text = str(caught.value)
    assert text.startswith("_Doc has 4 problem(s):")
    assert "name: expected text, got 3" in text
    assert "year: expected a whole number, got True" in text  # YAML's `true` is not a year
    assert "reasoning: expected true or false, got 'yes'" in text
    assert "sub.n: expected a number >= 2, got 1" in text


def test_unknown_key_gets_a_suggestion_and_the_allowed_keys():
    with pytest.raises(ConfigError, match=r"yeer: unknown field \(did you mean year\?\); allowed: name, year"):
        _Doc(name="x", yeer=2025)


def test_job_configs_are_strict_and_frozen():
    cfg = GenerateConfig(model="gpt-4o", dataset="bagls", data_root="/tmp/data")
    assert cfg.data_root == Path("/tmp/data") and cfg.timeout_s == config.JOB_TIMEOUT_S
    with pytest.raises(ValueError):
        cfg.model_copy().__setattr__("repeat", 2)
    with pytest.raises(ConfigError, match=r"repeat: expected a number >= 1, got 0"):
        GenerateConfig(model="gpt-4o", dataset="bagls", repeat=0)
    with pytest.raises(ConfigError, match=r"epochs: expected a whole number, got '120'"):
        TrainConfig(run_id="abc", epochs="120")


def test_cli_defaults_and_help_come_from_the_job_config():
    params = {p.name: p for p in main.commands["generate"].params}
    for name in ("timeout_s", "memory_gb", "max_fix_rounds", "stuck_after", "repeat", "study"):
        assert params[name].default == config.default_of(GenerateConfig, name), name
        assert params[name].help == GenerateConfig.model_fields[name].description, name
    train = {p.name: p for p in main.commands["train"].params}
    assert train["timeout_s"].default == config.JOB_TIMEOUT_S and not train["epochs"].required  # or --seeds


def test_a_bad_option_value_exits_2_naming_the_field():
    result = CliRunner().invoke(main, ["generate", "--model", "gpt-4o", "--dataset", "bagls", "--repeat", "0"])
    assert result.exit_code == 2
    assert (
        "GenerateConfig has 1 problem(s)" in result.output and "repeat: expected a number >= 1, got 0" in result.output
    )


def _entrypoint_args():
    spec = importlib.util.spec_from_file_location("_args", ROOT / "entrypoints" / "_args.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mlproject_arguments_become_cli_arguments():
    normalise = _entrypoint_args().normalise
    argv = ["--epochs", "2.0", "--max-batches", "-1.0", "--study", "", "--dry-run", "true", "--bonferroni", "false"]
    assert normalise(argv) == ["--epochs", "2", "--dry-run"]
    assert normalise(["--model", "gpt-4o", "--workers", "3.0"]) == ["--model", "gpt-4o", "--workers", "3"]
    assert normalise(["--run-id", "r", "--epochs", "-1", "--seeds", "-1"]) == ["--run-id", "r"]  # train unset


def test_mlproject_leaves_the_job_defaults_to_the_config():
    """A default written in MLproject as well as in config.py would drift apart; MLproject says "" instead."""
    doc = yaml.safe_load((ROOT / "MLproject").read_text())
    jobs = {
        "generate": GenerateConfig,
        "train": TrainConfig,
        "evaluate": config.EvaluateConfig,
        "baseline": config.BaselineConfig,
    }
    for entry, model in jobs.items():
        for name, param in doc["entry_points"][entry]["parameters"].items():
            default = param.get("default") if isinstance(param, dict) else None
            field = model.model_fields.get(name)
            if field is None or field.is_required() or default in (None, "", -1):
                continue
            pytest.fail(f'MLproject {entry}.{name} repeats config.py\'s default {default!r}; write ""')
