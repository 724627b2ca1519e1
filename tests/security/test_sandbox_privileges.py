"""Generated code has no privileges inside the sandbox, whoever runs llmseg: hostile programs, real bubblewrap.

CI runs as root, the case where bubblewrap alone would keep every capability; the last test repeats the
checks as an unprivileged user created for it. These tests fail (never skip) without bubblewrap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

import pytest

from llmseg_mlflow.pipeline import sandbox

# Run inside: report uid, capabilities, and the errno of every way to regain write access or privileges.
PROBE = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096

def remount_rw(target):
    rc = libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND, None)
    return "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]

def try_write(path, text):
    try:
        with open(path, "w") as f:
            f.write(text)
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))

caps = {l.split(":")[0]: l.split()[1] for l in open("/proc/self/status") if l.startswith("Cap")}
targets = json.loads(sys.argv[1])
core = open("/proc/sys/kernel/core_pattern").read()  # written back unchanged: harmless if it were writable
out = {
    "uid": os.getuid(), "caps": caps,
    "remount": {t: remount_rw(t) for t in targets},
    "userns": "ok" if libc.unshare(0x10000000) == 0 else errno.errorcode[ctypes.get_errno()],
    "proc_sys": try_write("/proc/sys/kernel/core_pattern", core),
    "sysrq": try_write("/proc/sysrq-trigger", "h"),
    "plant_pth": try_write(sys.argv[2], "import os"),
}
print(json.dumps(out))
"""


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _assert_unprivileged(report: dict, targets: list[str]) -> None:
    assert report["uid"] == sandbox.SANDBOX_UID
    assert all(int(v, 16) == 0 for v in report["caps"].values()), report["caps"]  # no capability at all
    assert report["remount"] == {t: "EPERM" for t in targets}, report["remount"]
    assert report["userns"] in ("EPERM", "ENOSPC", "EUSERS"), report["userns"]  # no nested namespace
    assert report["proc_sys"] in ("EROFS", "EACCES", "EPERM"), report["proc_sys"]
    assert report["sysrq"] in ("EROFS", "EACCES", "EPERM", "ENOENT"), report["sysrq"]
    assert report["plant_pth"] in ("EROFS", "EACCES", "EPERM"), report["plant_pth"]


def test_bubblewrap_is_installed():
    assert sandbox.bwrap_path(), "bubblewrap is missing: the security tests need it (apt-get install -y bubblewrap)"


def test_no_bind_can_be_remounted_writable_and_no_privilege_is_left(tmp_path):
    work, pool = tmp_path / "attempt", tmp_path / "pool"
    work.mkdir(), pool.mkdir()
    (pool / "1.png").write_bytes(b"img")
    (work / "probe.py").write_text(PROBE)
    planted = _site_packages() / "llmseg_planted.pth"
    targets = sorted(
        {
            "/",
            "/usr",
            "/proc",
            "/etc/passwd",
            "/data/pool",
            sys.prefix,
            sys.base_prefix,
            str(_site_packages()),
            "/workspace",
            "/tmp",
            "/dev",
        }
    )
    mounts = sandbox.Mounts(work, readonly=((pool, Path("/data/pool")),), workdir_at=Path("/workspace"))
    result = sandbox.run(
        [sys.executable, "probe.py", json.dumps(targets), str(planted)],
        mounts,
        sandbox.Limits(timeout_s=60, memory_gb=2),
        log_dir=tmp_path / "logs",
    )
    assert result.ok, result.stderr_text()
    _assert_unprivileged(json.loads(result.stdout_text()), targets)
    assert not planted.exists()  # the next `llmseg` on the host runs nothing of the pipeline's


def _unprivileged_user() -> str | None:
    """A plain user for the test (created when root can), or None where there is none."""
    name = "llmsegtest"
    if subprocess.run(["id", name], capture_output=True).returncode == 0:
        return name
    if os.geteuid() == 0 and shutil.which("useradd"):
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
        return name
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="already unprivileged: the test above is this case")
def test_same_guarantees_as_an_unprivileged_user():
    user = _unprivileged_user()
    assert user, "cannot create a plain user (useradd missing)"
    python = shutil.which("python3", path="/usr/bin")  # root's interpreter may lie under /root, closed to users
    assert python, "the test runs /usr/bin/python3 as the plain user"
    with tempfile.TemporaryDirectory(prefix="llmseg-unpriv-") as tmp:
        work = Path(tmp)
        (work / "probe.py").write_text(PROBE)
        shutil.chown(work, user, user)
        targets = ["/", "/usr", "/proc", "/workspace"]
        argv = [
            sandbox.require_bwrap(),
            *sandbox.PRIVILEGE_FLAGS,
            "--die-with-parent",
            "--proc",
            "/proc",
            "--remount-ro",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        for top in ("bin", "lib", "lib64", "sbin"):
            if Path("/", top).is_symlink():
                argv += ["--symlink", os.readlink(f"/{top}"), f"/{top}"]
        argv += [
            "--bind",
            str(work),
            "/workspace",
            "--chdir",
            "/workspace",
            "--remount-ro",
            "/",
            python,
            "probe.py",
            json.dumps(targets),
            "/usr/lib/python3/dist-packages/llmseg_planted.pth",
        ]
        done = subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=60)
    if "No permissions to create new namespace" in done.stderr or "setting up uid map" in done.stderr:
        pytest.fail(
            f"unprivileged user namespaces are off on this machine: {done.stderr.strip()} "
            "(see docs/security.md: how to run as a plain user)"
        )
    assert done.returncode == 0, done.stderr
    _assert_unprivileged(json.loads(done.stdout), targets)


def test_harness_environment_and_keys_are_invisible(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary-4711")
    work = tmp_path / "attempt"
    work.mkdir()
    (work / "main.py").write_text(
        textwrap.dedent(f"""
        import glob, os
        seen = [open(p, "rb").read() for p in glob.glob("/proc/*/environ") if os.access(p, os.R_OK)]
        print(any(b"canary-4711" in s for s in seen), sorted(os.environ))
        print(os.path.exists("/proc/{os.getpid()}"))
    """)
    )
    result = sandbox.run(
        [sys.executable, "main.py"],
        sandbox.Mounts(work),
        sandbox.Limits(timeout_s=60, memory_gb=2),
        log_dir=tmp_path / "logs",
    )
    assert result.ok, result.stderr_text()
    first, second = result.stdout_text().splitlines()
    assert first.startswith("False") and "ANTHROPIC_API_KEY" not in first
    assert second == "False"  # the harness's own process is not even visible
