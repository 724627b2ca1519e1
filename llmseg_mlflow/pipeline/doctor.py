"""`llmseg doctor`: what the sandbox offers generated code (Python, torch, CUDA, the modules LLM pipelines
commonly import), probed inside the sandbox itself, and what enforces its limits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import cast

from llmseg_mlflow.pipeline import sandbox

_QUIET = {"NO_ALBUMENTATIONS_UPDATE": "1"}

# What LLM pipelines commonly import (by import name); the `pipeline` extra installs the usual ones.
COMMON_MODULES = (
    "torch",
    "torchvision",
    "numpy",
    "PIL",
    "cv2",
    "skimage",
    "albumentations",
    "torchsummary",
    "torchinfo",
    "nibabel",
    "sklearn",
    "pandas",
    "openpyxl",
    "matplotlib",
    "tqdm",
    "scipy",
    "segmentation_models_pytorch",
    "monai",
    "timm",
    "SimpleITK",
)
_PROBE = """
import importlib, importlib.metadata as md, json, sys, warnings
warnings.simplefilter("ignore")
dists, mods = md.packages_distributions(), {}
for name in sys.argv[1:]:
    try:
        m = importlib.import_module(name)
    except BaseException as exc:
        mods[name] = {"available": False, "version": None, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        continue
    version = getattr(m, "__version__", None)
    for dist in ([] if isinstance(version, str) else dists.get(name, [])):
        try:
            version = md.version(dist)
            break
        except md.PackageNotFoundError:
            pass
    mods[name] = {"available": True, "version": version if isinstance(version, str) else None}
cuda = bool(mods.get("torch", {}).get("available")) and sys.modules["torch"].cuda.is_available()
print(json.dumps({"python": sys.version.split()[0], "cuda_available": cuda, "modules": mods}))
"""


def _bwrap_version() -> str | None:
    path = sandbox.bwrap_path()
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def sandbox_report(modules: tuple[str, ...] = COMMON_MODULES) -> dict[str, object]:
    """Python, torch, CUDA and which common modules import INSIDE the sandbox; bwrap and cgroup facts."""
    from llmseg_mlflow.pipeline import cgroups

    try:
        sandbox.check_available()
        sandboxed, note = True, None
    except sandbox.SandboxUnavailable as exc:  # still worth listing: the probe then runs unconfined
        sandboxed, note = False, str(exc)
    support = cgroups.support()
    report: dict[str, object] = {
        "sandboxed": sandboxed,
        "sandbox_problem": note,
        "bwrap": _bwrap_version(),
        "limits_enforced_by": sandbox.enforcement(),
        "cgroup_note": support.reason or None,
    }
    work = Path(tempfile.mkdtemp(prefix="llmseg-doctor-"))
    try:
        (work / "box").mkdir()
        result = sandbox.run(
            [sys.executable, "-c", _PROBE, *modules],
            sandbox.Mounts(work / "box"),
            sandbox.Limits(timeout_s=300, memory_gb=8, output_mb=1, disk_gb=1),
            log_dir=work / "logs",
            env=_QUIET,
            unsafe_no_sandbox=not sandboxed,
            name="doctor",
        )
        lines = result.stdout_text().strip().splitlines()
        try:
            probe = json.loads(lines[-1]) if result.ok and lines else None
        except ValueError:
            probe = None
        if not isinstance(probe, dict):
            report["probe_error"] = f"exit {result.returncode}: {result.stderr_text().strip()[-1000:]}"
            return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mods = probe.get("modules", {})
    report.update(
        python=probe.get("python"),
        cuda_available=probe.get("cuda_available"),
        modules=mods,
        torch=mods.get("torch", {}).get("version"),
        torchvision=mods.get("torchvision", {}).get("version"),
    )
    return report


def render_report(report: dict[str, object]) -> list[str]:
    """`llmseg doctor`'s listing."""
    where = "inside the sandbox" if report["sandboxed"] else f"UNCONFINED ({report['sandbox_problem']})"
    lines = [
        f"sandbox: {report['bwrap'] or 'bubblewrap missing'}; memory and process caps enforced by "
        f"{report['limits_enforced_by']}" + (f" ({report['cgroup_note']})" if report.get("cgroup_note") else ""),
        f"probe ran {where}",
    ]
    if "probe_error" in report:
        return lines + [f"the probe failed: {report['probe_error']}"]
    lines.append(
        f"python {report['python']}, torch {report['torch']}, torchvision {report['torchvision']}, "
        f"CUDA available: {'yes' if report['cuda_available'] else 'no'}"
    )
    modules = cast("dict[str, dict[str, object]]", report["modules"])  # the probe's JSON, per module
    for name, info in modules.items():
        state = f"yes  {info['version'] or ''}" if info["available"] else f"no   ({info.get('error', '')})"
        lines.append(f"  {name:28} {state}")
    return lines
