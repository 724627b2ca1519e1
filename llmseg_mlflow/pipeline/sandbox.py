"""Run untrusted generated code under bubblewrap: no privileges, scratch env, no network, kernel-enforced caps.

Whoever runs llmseg (root in a container, a user on a workstation), the code runs in a fresh user namespace
as uid 65534 with every capability dropped and no further user namespaces, so no bind can be remounted
writable; /proc is read-only. Memory (tmpfs and shared memory included) and processes are capped by a
cgroup (see cgroups.py), each file's size by RLIMIT_FSIZE and the attempt folder's total by a watchdog.
docs/security.md states the threat model.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from llmseg_mlflow import untrusted
from llmseg_mlflow.config import JOB_MEMORY_GB, JOB_TIMEOUT_S
from llmseg_mlflow.pipeline import cgroups
from llmseg_mlflow.pipeline.usage_sampler import Sample, UsageSampler

# What Python and its libraries need from /etc; nothing else of the host is bound.
_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "passwd",
    "group",
    "nsswitch.conf",
    "fonts",
    "alternatives",
    "mime.types",
    "hosts",
)
_SITE_DIR = Path(__file__).with_name("sandbox_site")  # sitecustomize: the --max-batches cap
SANDBOX_UID = 65534  # "nobody": the code's uid inside; it maps to the uid that runs llmseg, without capabilities
# A user namespace even for root (bwrap otherwise keeps root's capabilities, and any bind can be
# remounted writable), no capabilities, no nested user namespaces that could regain them.
PRIVILEGE_FLAGS = (
    "--unshare-all",
    "--unshare-user",
    "--uid",
    str(SANDBOX_UID),
    "--gid",
    str(SANDBOX_UID),
    "--disable-userns",
    "--cap-drop",
    "ALL",
)
_PASS_THROUGH = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "LANG",
    "TZ",
)


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


@dataclass(frozen=True)
class Limits:
    """Caps for one execution."""

    timeout_s: float = JOB_TIMEOUT_S
    memory_gb: float = JOB_MEMORY_GB
    output_mb: float = 20.0
    disk_gb: float = 20.0  # the attempt folder (checkpoints, plots, Excel files); each file at most this much
    max_processes: int = 1024  # processes and threads together (torch and DataLoader workers use dozens)


@dataclass(frozen=True)
class Mounts:
    """Where the code may write (its attempt folder, also its cwd) and what it may only read.

    Each may appear at another path inside the sandbox (`workdir_at`; a readonly entry may be a
    (host, inside) pair): fixed inside paths keep tracebacks identical from run to run, so a rerun
    sends the LLM the same text and is answered from the cache; they also hide the host's layout.
    """

    workdir: Path
    readonly: tuple[Path | tuple[Path, Path], ...] = ()
    workdir_at: Path | None = None

    def inside(self) -> Path:
        """The attempt folder's path as the code sees it."""
        return self.workdir_at or self.workdir


@dataclass
class ExecResult:
    """How one execution ended, with its captured output."""

    returncode: int | None
    duration_s: float
    stdout_path: Path
    stderr_path: Path
    timed_out: bool = False
    out_of_memory: bool = False
    too_many_processes: bool = False
    disk_quota: bool = False
    peak_rss_gb: float = 0.0
    peak_memory_gb: float | None = None  # the cgroup's peak (tmpfs and page cache included), where there is one
    truncated: list[str] = field(default_factory=list)
    usage: list[Sample] = field(default_factory=list)  # CPU, memory, GPU over time, when asked (`sample_usage_s`)

    @property
    def ok(self) -> bool:
        """True when the process exited 0 within its limits."""
        return (
            self.returncode == 0
            and not self.timed_out
            and not self.out_of_memory
            and not self.too_many_processes
            and not self.disk_quota
        )

    def stderr_text(self) -> str:
        """The captured stderr (its last MB; the harness writes it outside every writable mount)."""
        return _log_text(self.stderr_path)

    def stdout_text(self) -> str:
        """The captured stdout (its last MB)."""
        return _log_text(self.stdout_path)


def _log_text(path: Path) -> str:
    """A log read as untrusted all the same: a link or FIFO put in its place is never followed."""
    try:
        return untrusted.read_text(path)
    except untrusted.UntrustedFileError as exc:
        return f"[llmseg: {path.name} not read: {exc.reason}]"


def bwrap_path() -> str | None:
    """The bubblewrap binary, if installed."""
    return shutil.which("bwrap")


def require_bwrap() -> str:
    """The bubblewrap binary, or an error that says how to install it."""
    path = bwrap_path()
    if path is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed; generated code only runs inside it. "
            "Install it with `sudo apt-get install -y bubblewrap` (Debian/Ubuntu) or "
            "`sudo dnf install bubblewrap`, or pass --unsafe-no-sandbox to run the code unconfined."
        )
    return path


_CHECKED: dict[str, str | None] = {}


def check_available() -> None:
    """Fail early, before any run is created, when bwrap is missing or cannot make namespaces here."""
    bwrap = require_bwrap()
    if bwrap not in _CHECKED:
        probe = subprocess.run(
            _bwrap_argv(bwrap, Mounts(Path("/tmp")), scratch_env()) + ["true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        _CHECKED[bwrap] = None if probe.returncode == 0 else probe.stderr.strip()
    if _CHECKED[bwrap]:
        raise SandboxUnavailable(
            f"bubblewrap is installed but cannot start a sandbox here: {_CHECKED[bwrap]}. "
            "The sandbox needs user namespaces: as root they always work; as a plain user enable them with "
            "`sudo sysctl -w user.max_user_namespaces=15000` (and on Debian <= 11 "
            "`sudo sysctl -w kernel.unprivileged_userns_clone=1`, on Ubuntu >= 23.10 "
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for bwrap). "
            "In a container, run it with --security-opt seccomp=unconfined or as root. "
            "--unsafe-no-sandbox runs the code unconfined (it can then read your keys)."
        )


def scratch_env(extra: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """An environment built from nothing: no keys, tokens or MLFLOW_* variables can leak in."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home or "/tmp"),
        "TMPDIR": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(_SITE_DIR),
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "TORCH_HOME": "/tmp/torch",
        "HF_HUB_OFFLINE": "1",
        "NO_ALBUMENTATIONS_UPDATE": "1",  # its import asks the network for a newer version: a warning in every log
        "NO_COLOR": "1",
    }
    env.update({k: os.environ[k] for k in _PASS_THROUGH if k in os.environ})
    env.update(extra or {})
    return env


def _bwrap_argv(bwrap: str, mounts: Mounts, env: dict[str, str], tmpfs_bytes: int = 1 << 30) -> list[str]:
    argv = [
        bwrap,
        *PRIVILEGE_FLAGS,
        "--die-with-parent",
        "--new-session",
        "--proc",
        "/proc",
        "--remount-ro",
        "/proc",  # bwrap leaves /proc/sys writable to a host-root uid
        "--dev",
        "/dev",
        "--size",
        str(tmpfs_bytes),
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(tmpfs_bytes),
        "--tmpfs",
        "/tmp",
        "--clearenv",
    ]
    for top in ("usr", "bin", "lib", "lib64", "lib32", "sbin"):
        path = Path("/") / top
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    for name in _ETC_FILES:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    # The interpreter: the venv and the Python it was made from, nothing else of $HOME.
    for prefix in sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}):
        argv += ["--ro-bind", prefix, prefix]
    argv += ["--ro-bind", str(_SITE_DIR), str(_SITE_DIR)]
    for dev in sorted(Path("/dev").glob("nvidia*")):  # CUDA when the user has it
        argv += ["--dev-bind", str(dev), str(dev)]
    for entry in mounts.readonly:
        host, inside = (entry, entry) if isinstance(entry, Path) else entry
        argv += ["--ro-bind", str(host), str(inside)]
    argv += ["--bind", str(mounts.workdir), str(mounts.inside()), "--chdir", str(mounts.inside())]
    argv += ["--remount-ro", "/"]  # the sandbox's own root stays read-only: writes go to workdir or /tmp
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv


def _drain(stream, path: Path, cap: int, truncated: list[str], on_line: Callable[[str], None] | None = None) -> None:
    """Copy a pipe to a file up to `cap` bytes, then keep reading so the child never blocks."""
    written, pending = 0, b""
    with path.open("wb") as out:
        for chunk in iter(lambda: stream.read1(65536), b""):
            if written < cap:
                out.write(chunk[: cap - written])
                out.flush()
            written += len(chunk)
            if on_line is not None:
                *lines, pending = (pending + chunk).split(b"\n")
                pending = pending[-65536:]  # a line without end must not grow without bound
                for line in lines:
                    on_line(line.decode(errors="replace"))
        if written > cap:
            out.write(f"\n[llmseg: output truncated at {cap} of {written} bytes]\n".encode())
            truncated.append(path.name)


def _pss(pid: int) -> int:
    """Proportional set size: shared pages split between their users, so forked workers count them once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree_memory(root: psutil.Process, proportional: bool) -> int:
    """Memory of the process tree: the RSS sum, or (the watchdog's measure without a cgroup) the PSS sum."""
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            total += _pss(proc.pid) if proportional else proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_tree(proc: subprocess.Popen, cgroup: cgroups.Cgroup | None = None) -> None:
    """Kill bwrap's group; --die-with-parent then ends the sandbox's PID 1, and the kernel the rest."""
    try:
        root = psutil.Process(proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in procs:  # belt and braces for the unsandboxed mode, which has no PID namespace
        try:
            p.kill()
        except psutil.Error:
            pass
    if cgroup is not None:
        cgroup.kill()


def last_line(path: Path) -> str:
    """The latest line (or tqdm redraw) written to a log file, for progress display."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    parts = [p.strip() for p in tail.replace("\r", "\n").split("\n") if p.strip()]
    return parts[-1] if parts else ""


def enforcement() -> str:
    """What enforces memory and process caps on this machine (cgroup-v1, cgroup-v2 or rlimits+watchdog)."""
    return cgroups.support().enforced


def check_limits(limits: Limits, workdir: Path) -> list[str]:
    """What of `limits` this machine cannot enforce as asked, each with what is enforced instead.

    Non-positive caps are bad input (ValueError); the rest are warnings for the caller to show.
    """
    for name in ("timeout_s", "memory_gb", "disk_gb", "max_processes"):
        if not getattr(limits, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(limits, name)}")
    notes = []
    total = psutil.virtual_memory().total / 1024**3
    if limits.memory_gb > total:
        notes.append(
            f"--memory-gb {limits.memory_gb:g} is more than this machine's {total:.1f} GB: the kernel's "
            f"own out-of-memory killer acts first, at about {total:.1f} GB"
        )
    if not cgroups.support().version:
        notes.append(
            f"no cgroup here ({cgroups.support().reason}): memory is enforced by a 1 s RSS watchdog and "
            f"{limits.memory_gb:g} GB tmpfs mounts, processes by RLIMIT_NPROC "
            f"{'(not binding for root)' if os.geteuid() == 0 else ''}".rstrip()
        )
    probe = workdir if workdir.exists() else next((p for p in workdir.parents if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free / 1024**3
    if limits.disk_gb > free:
        notes.append(
            f"--disk-gb {limits.disk_gb:g} is more than the {free:.1f} GB free under {probe}: "
            f"the disk itself fills first, at about {free:.1f} GB"
        )
    return notes


def disk_usage(folder: Path, max_entries: int = 200_000) -> tuple[int, int]:
    """(bytes on disk, entries) under folder, never following links; stops counting at max_entries."""
    total, entries, stack = 0, 0, [str(folder)]
    while stack and entries < max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    st = entry.stat(follow_symlinks=False)
                    total += st.st_blocks * 512  # a sparse file counts what it really occupies
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:  # vanished while we looked
            continue
    return total, entries


def _wrapper(cgroup: cgroups.Cgroup | None, limits: Limits, command: list[str]) -> list[str]:
    """sh joins the cgroup(s) and sets the rlimits, then execs the sandbox: nothing runs outside the caps."""
    steps = [f'echo 0 > "{path}"' for path in (cgroup.procs_files() if cgroup else [])]
    rlimits = [f"--fsize={int(limits.disk_gb * 1024**3)}"]
    if cgroup is None and os.geteuid() != 0:  # RLIMIT_NPROC does not bind root's uid
        rlimits.append(f"--nproc={limits.max_processes}")
    prlimit = shutil.which("prlimit")
    prefix = [prlimit, *rlimits, "--"] if prlimit else []
    return ["/bin/sh", "-c", " && ".join([*steps, 'exec "$@"']), "llmseg-sandbox", *prefix, *command]


def run(
    argv: list[str],
    mounts: Mounts,
    limits: Limits,
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    unsafe_no_sandbox: bool = False,
    name: str = "run",
    on_tick: Callable[[float, str], None] | None = None,
    tick_s: float = 20.0,
    on_line: Callable[[str], None] | None = None,
    sample_usage_s: float | None = None,
) -> ExecResult:
    """Run argv (e.g. [python, main.py]) confined to `mounts`; stdout/stderr go to log_dir/{name}.*.log.

    `log_dir` must lie outside every writable mount (the harness reads the logs back).
    `on_tick(elapsed_s, latest_output_line)` is called every `tick_s` seconds while it runs;
    `on_line(text)` with each stdout line as it comes (from a reader thread); `sample_usage_s`: record the
    code's CPU, memory and the machine's GPUs every so many seconds (`ExecResult.usage`).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    full_env = scratch_env(env)
    mem_cap = int(limits.memory_gb * 1024**3)
    disk_cap = int(limits.disk_gb * 1024**3)
    if unsafe_no_sandbox:
        command = argv
    else:
        command = _bwrap_argv(require_bwrap(), mounts, full_env, tmpfs_bytes=mem_cap) + argv
    cgroup = cgroups.create(mem_cap, limits.max_processes)
    out_path, err_path = log_dir / f"{name}.stdout.log", log_dir / f"{name}.stderr.log"
    cap = int(limits.output_mb * 1024 * 1024)
    truncated: list[str] = []
    start = time.monotonic()
    proc = subprocess.Popen(
        _wrapper(cgroup, limits, command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=mounts.workdir,
        env=full_env,
        start_new_session=True,
    )
    drains = [
        threading.Thread(target=_drain, args=(s, p, cap, truncated, f), daemon=True)
        for s, p, f in ((proc.stdout, out_path, on_line), (proc.stderr, err_path, None))
    ]
    for t in drains:
        t.start()
    sampler = UsageSampler(sample_usage_s).start(proc.pid, cgroup) if sample_usage_s else None
    timed_out = oom = quota = False
    peak = 0
    root = psutil.Process(proc.pid)
    next_tick = start + tick_s
    try:
        # Poll once a second: scanning costs CPU that the training would otherwise use. The cgroup
        # enforces memory and processes at once; the poll is the fallback and the disk watchdog.
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            if on_tick is not None and time.monotonic() >= next_tick:
                next_tick += tick_s
                on_tick(time.monotonic() - start, last_line(err_path) or last_line(out_path))
            if time.monotonic() - start > limits.timeout_s:
                timed_out = True
            else:
                # With a cgroup the kernel enforces the cap and the RSS sum is only reported; without one
                # the watchdog uses PSS, since an RSS sum counts pages shared by forked workers many times.
                peak = max(peak, _tree_memory(root, proportional=cgroup is None))
                oom = cgroup is None and peak > mem_cap
                quota = disk_usage(mounts.workdir)[0] > disk_cap
            if timed_out or oom or quota:
                _kill_tree(proc, cgroup)
                proc.wait()
                break
        if cgroup is not None:
            cgroup.kill()  # daemons the code left behind (in unsafe mode there is no PID namespace)
    finally:
        if proc.poll() is None:  # the harness itself was interrupted: never leave the code running
            _kill_tree(proc, cgroup)
            proc.wait()
        for t in drains:
            t.join(timeout=10)
        usage = sampler.stop() if sampler else []
        facts = (cgroup.oom_killed(), cgroup.pids_refused(), cgroup.peak_memory()) if cgroup else (False, False, 0)
        if cgroup is not None:
            cgroup.remove()
    oom = oom or facts[0]
    return ExecResult(
        returncode=proc.returncode,
        duration_s=time.monotonic() - start,
        stdout_path=out_path,
        stderr_path=err_path,
        timed_out=timed_out,
        out_of_memory=oom,
        too_many_processes=facts[1] and not (timed_out or oom),
        disk_quota=quota,
        peak_rss_gb=peak / 1024**3,
        peak_memory_gb=facts[2] / 1024**3 if cgroup else None,
        truncated=truncated,
        usage=usage,
    )
