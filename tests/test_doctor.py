"""`llmseg doctor` and the pipeline environment: what generated code can import inside the sandbox."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from llmseg_mlflow.cli import main
from llmseg_mlflow.pipeline import doctor, sandbox
from llmseg_mlflow.pipeline.errors import classify

pytestmark = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="needs bubblewrap (apt-get install bubblewrap)")


@pytest.fixture(scope="module")
def report() -> dict:
    result = CliRunner().invoke(main, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_each_module_imports_in_the_sandbox_exactly_when_it_is_installed(report):
    assert report["sandboxed"] is True and list(report["modules"]) == list(doctor.COMMON_MODULES)
    for name, info in report["modules"].items():
        installed = importlib.util.find_spec(name) is not None  # same interpreter, outside the sandbox
        assert info["available"] is installed, (name, info)
        assert info["available"] or info["error"].startswith("ModuleNotFoundError"), (name, info)


def test_the_pipeline_extra_is_visible_inside(report):
    for name in ("albumentations", "cv2", "skimage", "torchsummary", "nibabel"):
        assert report["modules"][name]["available"] and report["modules"][name]["version"], name


def test_versions_and_limits_are_reported(report):
    import torch

    assert report["python"] == sys.version.split()[0]
    assert report["torch"] == torch.__version__ and report["modules"]["torch"]["version"] == torch.__version__
    assert report["cuda_available"] is torch.cuda.is_available()
    assert report["bwrap"].startswith("bubblewrap")
    assert report["limits_enforced_by"] == sandbox.enforcement()


def test_human_listing(report):
    lines = doctor.render_report(report)
    assert lines[0].startswith("sandbox: bubblewrap") and "inside the sandbox" in lines[1]
    assert any(line.split()[:2] == ["albumentations", "yes"] for line in lines)
    missing = [n for n, i in report["modules"].items() if not i["available"]]
    for name in missing:
        assert any(line.split()[:2] == [name, "no"] for line in lines)


def test_an_absent_module_fails_with_its_import_error_verbatim(tmp_path):
    absent = next(
        n
        for n in ("monai", "segmentation_models_pytorch", "llmseg_no_such_module")
        if importlib.util.find_spec(n) is None
    )
    work = tmp_path / "attempt"
    work.mkdir()
    (work / "main.py").write_text(
        textwrap.dedent(f"""\
        import albumentations, cv2, skimage, torchsummary, nibabel
        print("extra imported")
        import {absent}
    """)
    )
    result = sandbox.run(
        [sys.executable, "main.py"], sandbox.Mounts(work), sandbox.Limits(timeout_s=300), log_dir=tmp_path / "logs"
    )
    assert not result.ok and "extra imported" in result.stdout_text()
    error = classify(result, 300, 16)
    assert error.error_type == "ModuleNotFoundError"
    assert error.feedback.startswith("Traceback (most recent call last):")
    assert error.feedback.endswith(f"ModuleNotFoundError: No module named '{absent}'")
    assert 'File "/' in error.feedback and 'main.py", line 3' in error.feedback
