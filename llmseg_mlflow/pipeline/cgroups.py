"""Kernel-enforced memory and process caps for one sandbox: a memory + pids cgroup (v1 or v2).

The memory cgroup charges everything the sandbox's processes allocate, tmpfs and shared-memory pages
included, and the kernel enforces it at once (a poll of RSS misses both). Where no cgroup can be made
(a plain container, a user without delegation) `create` returns None and says why once; the sandbox
then falls back to sized tmpfs mounts, rlimits and its RSS watchdog.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_CONTROLLERS = ("memory", "pids")


@dataclass(frozen=True)
class Support:
    """Where sandboxes' cgroups are made (one parent folder per controller), or why they cannot be."""

    version: int  # 1, 2, or 0 when unavailable
    parents: tuple[Path, ...] = ()  # v1: (memory parent, pids parent); v2: (parent,)
    reason: str = ""

    @property
    def enforced(self) -> str:
        """A short name of what enforces memory and process caps here (logged as a tag)."""
        return f"cgroup-v{self.version}" if self.version else "rlimits+watchdog"


def _own_path(controller: str | None) -> str:
    """This process's cgroup path in a v1 hierarchy (by controller) or in the v2 one (None)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if (controller is None and names == "") or (controller and controller in names.split(",")):
            return path.lstrip("/")
    raise OSError(f"no {controller or 'v2'} entry in /proc/self/cgroup")


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)


def _probe_v1() -> Support:
    parents = []
    for controller in _CONTROLLERS:
        parent = ROOT / controller / _own_path(controller)
        if not _writable(parent):
            return Support(0, reason=f"the v1 {controller} cgroup {parent} is not writable by this user")
        parents.append(parent)
    return Support(1, tuple(parents))


def _probe_v2() -> Support:
    # Controllers can only be enabled for children of a cgroup without processes: the root cgroup
    # is exempt, so root gets its own `llmseg` subtree there.
    top = ROOT / "llmseg"
    try:
        if not top.exists():
            (ROOT / "cgroup.subtree_control").write_text("+memory +pids")
            top.mkdir()
        (top / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError as exc:
        return Support(0, reason=f"cannot delegate memory and pids under {top}: {exc.strerror or exc}")
    return Support(2, (top,))


def _probe() -> Support:
    try:
        if (ROOT / "memory" / "memory.limit_in_bytes").exists() and (ROOT / "pids").is_dir():
            return _probe_v1()
        if (ROOT / "cgroup.controllers").exists():
            if "memory" not in (ROOT / "cgroup.controllers").read_text().split():
                return Support(0, reason="the v2 hierarchy offers no memory controller")
            return _probe_v2()
        return Support(0, reason=f"no cgroup hierarchy is mounted at {ROOT}")
    except OSError as exc:
        return Support(0, reason=str(exc))


def _remove_stale(sup: Support) -> None:
    """Remove the empty cgroups of llmseg processes that were killed before they could clean up."""
    for parent in sup.parents:
        for folder in parent.glob("llmseg-*-*"):
            owner = folder.name.split("-")[1]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                try:
                    folder.rmdir()  # refused while a process is still in it
                except OSError:
                    pass


@lru_cache(maxsize=1)
def support() -> Support:
    """Probe once per process which cgroup hierarchy this machine offers us."""
    sup = _probe()
    _remove_stale(sup)
    return sup


_WARNED: list[str] = []


def warn_unavailable(why: str) -> None:
    """Say once per process, loudly, that memory and process caps are weaker here."""
    if why in _WARNED:
        return
    _WARNED.append(why)
    print(
        f"[llmseg] WARNING: no cgroup for the sandbox ({why}). Memory is capped by an RSS watchdog and "
        "sized tmpfs mounts, processes by RLIMIT_NPROC (not for root), disk by RLIMIT_FSIZE and a watchdog. "
        "Run as root on a machine whose cgroups are writable (or with systemd delegation) for kernel limits; "
        "see docs/security.md.",
        file=sys.stderr,
        flush=True,
    )


class Cgroup:
    """The cgroup(s) of one sandbox: memory.max / memory.limit_in_bytes and pids.max set at creation."""

    def __init__(self, sup: Support, memory_bytes: int, pids_max: int) -> None:
        self.version = sup.version
        name = f"llmseg-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dirs = tuple(parent / name for parent in sup.parents)
        for folder in self.dirs:
            folder.mkdir()
        if self.version == 1:
            memory, pids = self.dirs
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # swap must not extend the cap
                swap.write_text(str(memory_bytes))
            (pids / "pids.max").write_text(str(pids_max))
        else:
            (folder,) = self.dirs
            (folder / "memory.max").write_text(str(memory_bytes))
            swap = folder / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
            (folder / "pids.max").write_text(str(pids_max))

    def procs_files(self) -> list[str]:
        """The cgroup.procs file(s) a process writes `0` into to join."""
        return [str(folder / "cgroup.procs") for folder in self.dirs]

    def _read(self, index: int, name: str) -> str:
        try:
            return (self.dirs[index] / name).read_text()
        except OSError:
            return ""

    @staticmethod
    def _field(text: str, key: str) -> int:
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
        return 0

    def peak_memory(self) -> int:
        """Highest memory charged to the sandbox (bytes), tmpfs and page cache included."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        text = self._read(0, name).strip()
        return int(text) if text.isdigit() else 0

    def oom_killed(self) -> bool:
        """True when the kernel killed a process of the sandbox for its memory cap."""
        if self.version == 1:
            return self._field(self._read(0, "memory.oom_control"), "oom_kill") > 0
        return self._field(self._read(0, "memory.events"), "oom_kill") > 0

    def pids_refused(self) -> bool:
        """True when a fork or thread was refused for the pids cap."""
        return self._field(self._read(len(self.dirs) - 1, "pids.events"), "max") > 0

    def pids(self) -> list[int]:
        """Processes still in the sandbox's cgroup."""
        found: set[int] = set()
        for folder in self.dirs:
            try:
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process left in the cgroup (the kernel cannot refuse it: a fork bomb ends too)."""
        deadline = time.monotonic() + 10
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup folders."""
        self.kill()
        for folder in self.dirs:
            for _ in range(50):  # the kernel frees the last tasks asynchronously
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def create(memory_bytes: int, pids_max: int) -> Cgroup | None:
    """A fresh cgroup with these caps, or None (after one loud warning) where none can be made."""
    sup = support()
    if not sup.version:
        warn_unavailable(sup.reason)
        return None
    try:
        return Cgroup(sup, memory_bytes, pids_max)
    except OSError as exc:
        warn_unavailable(f"creating it failed: {exc}")
        return None
