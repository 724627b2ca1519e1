"""`pip install .` (not editable) into a fresh venv, used from a folder outside the checkout: the prompt
template, the studies, the replay fixtures, the catalog YAMLs and the sandbox scripts ship as package data.

`llmseg demo` itself takes minutes; instead every packaged-data lookup runs once: a study by its packaged
name (`sweep demo --dry-run`) and one cheap sandboxed `generate` on a replay fixture (catalog, fixtures,
prompt, sandbox_site, inspect_net, the evaluation worker).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from llmseg_mlflow.pipeline.sandbox import bwrap_path

REPO = Path(__file__).resolve().parents[1]
# What `import llmseg_mlflow` must find inside the installed package (each lookup's own constant).
LOOKUPS = """\
import json, llmseg_mlflow
from llmseg_mlflow.catalog import datasets, models
from llmseg_mlflow.demo import DEMO_STUDY_FILE
from llmseg_mlflow.evaluation.evaluator import WORKER
from llmseg_mlflow.pipeline import inspection, prompt, sandbox
from llmseg_mlflow.sweep.study import STUDIES_DIR
print(json.dumps({"package": llmseg_mlflow.__file__, "prompt": str(prompt.template_path()),
                  "demo_study": str(DEMO_STUDY_FILE), "paper_study": str(STUDIES_DIR / "paper.yaml"),
                  "datasets": str(datasets.BUILTIN_FILE), "models": str(models.BUILTIN_FILE),
                  "fixture": str(models.FIXTURES_DIR / "replay" / "demo-2024-b" / "synthetic-gray-suffix" / "01.md"),
                  "eval_worker": str(WORKER), "inspect_net": str(inspection.SCRIPT),
                  "inspect_worker": str(inspection.WORKER),
                  "sitecustomize": str(sandbox._SITE_DIR / "sitecustomize.py")}))
"""


def _build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of the source (an in-tree build would leave build/ in the checkout)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "llmseg_mlflow", src / "llmseg_mlflow", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp / "dist").glob("llmseg_mlflow-*.whl")
    return wheel


def _fresh_venv(venv: Path) -> tuple[Path, bool]:
    """A venv from the base interpreter, seeing this venv's dependencies without reinstalling them.

    They are hard-linked into its site-packages (instant, no copy), minus this checkout's editable install:
    then the venv is whole, and the sandbox, which binds only the venv and the base Python, finds torch.
    Where hard links fail (another file system), a plain path in deps.pth (its .pth files stay unprocessed,
    so the editable finder stays off) -- the sandbox cannot see that folder: generate runs unsandboxed.
    """
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", purelib], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    deps = Path(sysconfig.get_paths()["purelib"])
    try:
        subprocess.run(["cp", "-al", f"{deps}/.", str(site)], check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.CalledProcessError):
        shutil.rmtree(site)
        site.mkdir()
        (site / "deps.pth").write_text(f"{deps}\n")
        return site, False
    for entry in site.iterdir():  # __editable__.llmseg_mlflow-*.pth, its finder, the dist-info
        if "llmseg" in entry.name.lower().replace("-", "_"):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    return site, True


@pytest.mark.slow  # about 90 s on two cores, most of it the generate run
def test_a_wheel_install_runs_from_anywhere(tmp_path):
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    site, linked = _fresh_venv(venv)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    away = tmp_path / "elsewhere"  # not the checkout, not on any path
    away.mkdir()
    drop = (
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "LLMSEG_PROMPT_FILE",
        "LLMSEG_MODELS_FILE",
        "LLMSEG_DATASETS_FILE",
        "LLMSEG_CACHE_DIR",
    )
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        LLMSEG_HOME=str(tmp_path / "home"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        MLFLOW_DISABLE_TELEMETRY="true",
    )

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=away, env=env, capture_output=True, text=True, timeout=600)

    found = run(str(venv / "bin" / "python"), "-c", LOOKUPS)
    assert found.returncode == 0, found.stderr
    paths = json.loads(found.stdout.strip().splitlines()[-1])
    assert Path(paths["package"]).parent == site / "llmseg_mlflow", paths["package"]  # the wheel, not the checkout
    for what, path in paths.items():
        assert Path(path).resolve().is_relative_to(site.resolve()) and Path(path).is_file(), (what, path)

    llmseg = str(venv / "bin" / "llmseg")
    for command in ((), ("demo",), ("sweep",), ("generate",)):
        shown = run(llmseg, *command, "--help")
        assert shown.returncode == 0 and "Usage: llmseg" in shown.stdout, shown.stderr
    plan = run(llmseg, "sweep", "demo", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"({site / 'llmseg_mlflow' / 'studies' / 'demo.yaml'})" in plan.stdout and "to run:" in plan.stdout

    # A catalog model whose replies are packaged fixtures, one short epoch: sandbox, training, evaluation.
    unsafe = [] if linked and bwrap_path() else ["--unsafe-no-sandbox"]
    made = run(
        llmseg,
        "generate",
        "--model",
        "demo-2024-b",
        "--dataset",
        "synthetic-gray-suffix",
        "--epochs",
        "1",
        "--max-batches",
        "2",
        "--no-preflight",
        "--study",
        "t-install",
        *unsafe,
    )
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    last = json.loads(made.stdout.strip().splitlines()[-1])
    assert last["status"] == "succeeded" and 0.0 <= last["heldout_dice_mean"] <= 1.0, last
    prompts = [p.read_text() for p in tmp_path.rglob("prompt.md")]  # the rendered template: the root's artifact
    assert prompts and "ready-to-run Python implementation for a U-Net" in prompts[0] and "{{" not in prompts[0]
