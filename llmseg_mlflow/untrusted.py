"""What sandboxed code left behind, read safely: regular files only, never through a link, never blocking, capped.

Generated code can leave `results/env.txt -> /proc/self/environ`, a link into $HOME, a FIFO or a 100 GB
sparse file wherever it could write; all the harness reads or uploads from there goes through this module."""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

_CHUNK = 1024 * 1024
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever (fstat then rejects it).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors that mean "this entry is not for us" (skipped); any other (a full disk on our side) is raised.
# O_NOFOLLOW answers ELOOP on a link (EMLINK on BSDs).
_SKIP_ERRNOS = {
    errno.ELOOP: "symlink",
    errno.EMLINK: "symlink",
    errno.ENOENT: "vanished",
    errno.EACCES: "permission denied",
    errno.ENOTDIR: "replaced while read",
}


class UntrustedFileError(OSError):
    """A file from a sandbox is not a regular file, or is over its cap."""

    def __init__(self, path: object, reason: str = "not a regular file"):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class Caps:
    """Bounds on what one walk accepts from a sandbox folder."""

    # A saved 2D segmentation checkpoint is tens to a few hundred MB; a 100 GB sparse file does not pass.
    max_file_bytes: int = 512 * 1024**2
    # Code, a few checkpoints, plots and predictions; bounds the temp copy and the upload of one folder.
    max_total_bytes: int = 2 * 1024**3
    # Predicted masks for a few thousand images fit. The walk also stops after 2 * max_files entries of any
    # kind, so a folder of a million empty files costs bounded time and a bounded skipped list.
    max_files: int = 10_000
    # Far above any real relative path; it also bounds nesting (hence open folder fds) to ~max_path_len / 2.
    max_path_len: int = 1024


@dataclass(frozen=True)
class Skipped:
    """One entry a walk left out (path relative to the root) and why."""

    path: str
    reason: str


@dataclass
class Listing:
    """What a walk accepted (absolute paths, sorted) and what it left out."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def skipped_json(self) -> list[dict]:
        """The skipped entries as [{path, reason}] (the content of skipped_files.json)."""
        return [{"path": s.path, "reason": s.reason} for s in self.skipped]


_KINDS = {
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "device",
    stat.S_IFBLK: "device",
    stat.S_IFDIR: "directory",
}


def _kind(mode: int) -> str | None:
    """Why an entry of this mode is refused; None for a regular file."""
    return None if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _skip_reason(exc: OSError) -> str | None:
    """The reason an OSError's errno means the entry is skipped (a link, a vanished file...); None: a real error."""
    return None if exc.errno is None else _SKIP_ERRNOS.get(exc.errno)


def open_regular(path: str | os.PathLike[str], *, dir_fd: int | None = None) -> int:
    """fd opened O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC, checked with fstat to be a regular file; else UntrustedFileError."""
    # Only the last component is guarded; the folders above are the caller's (walk() and copy_tree() pass
    # dir_fd, the folder they opened without following links).
    try:
        # lstat first: opening a device node can act (a tape rewinds) even with O_NONBLOCK.
        reason = _kind(os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        if reason:
            raise UntrustedFileError(path, reason)
        fd = os.open(path, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if _skip_reason(exc) == "symlink":  # swapped for a link between the lstat and the open
            raise UntrustedFileError(path, "symlink") from None
        raise
    reason = _kind(os.fstat(fd).st_mode)  # the fd is what gets read, whatever the name pointed to a moment ago
    if reason:
        os.close(fd)
        raise UntrustedFileError(path, reason)
    return fd


def _read_fd(fd: int, limit: int) -> bytes:
    chunks, left = [], limit
    while left > 0 and (chunk := os.read(fd, min(_CHUNK, left))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """Up to max_bytes of a regular file (never follows a link, never blocks on a FIFO); UntrustedFileError if not regular or larger than max_bytes."""
    fd = open_regular(path)
    try:
        if os.fstat(fd).st_size > max_bytes:
            raise UntrustedFileError(path, "over max_bytes")
        data = _read_fd(fd, max_bytes + 1)  # one byte more tells a file that grew past the cap
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UntrustedFileError(path, "over max_bytes")
    return data


def read_text(path: Path, max_bytes: int = 1024**2) -> str:
    """Text of a regular file, cut to its last max_bytes with a one-line '[llmseg: ... truncated]' marker first; '' if missing; UntrustedFileError if not regular."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return ""
    try:
        cut = max(0, os.fstat(fd).st_size - max_bytes)  # the end is kept: that is where a traceback is
        os.lseek(fd, cut, os.SEEK_SET)
        data = _read_fd(fd, max_bytes)
    finally:
        os.close(fd)
    if not cut:
        return data.decode(errors="replace")
    # The cut may fall inside a UTF-8 character: drop its continuation bytes rather than show U+FFFD.
    skip = next((i for i, b in enumerate(data[:4]) if b & 0xC0 != 0x80), 0)
    return f"[llmseg: first {cut + skip} bytes truncated]\n" + data[skip:].decode(errors="replace")


def _fits(parts: list[str], pat: list[str], folder: bool) -> bool:
    """Path.glob-style match, one pattern part per path part; a folder fits if it can hold a match."""
    return (len(parts) < len(pat) if folder else len(parts) == len(pat)) and all(map(fnmatchcase, parts, pat))


def _run(root: Path, caps: Caps, pattern: str | None, accept: Callable) -> Listing:
    """The walk; accept(dir_fd, name, rel, lstat) takes one file and returns its bytes, or raises UntrustedFileError."""
    # Each folder, root too (a link may stand in its place), is opened O_DIRECTORY|O_NOFOLLOW relative to its
    # parent's fd, never re-resolved by path: a folder swapped for a link is not entered, even mid-walk.
    root, pat = Path(os.path.abspath(root)), pattern.split("/") if pattern else None
    accepted: list[str] = []
    skipped: list[Skipped] = []
    total, left = 0, 2 * caps.max_files  # left: entries of any kind the walk may still look at

    def folder(fd: int, prefix: str) -> bool:
        nonlocal left
        with os.scandir(fd) as it:
            names = sorted(e.name for e in itertools.islice(it, left + 1))
        for name in names:
            if left <= 0:
                skipped.append(Skipped(prefix or ".", "walk stopped: over 2 * max_files entries"))
                return False
            left -= 1
            if not entry(fd, name, prefix + name):
                return False
        return True

    def entry(fd: int, name: str, rel: str) -> bool:
        nonlocal total
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if rel and pat is not None and not _fits(rel.split("/"), pat, folder=is_dir):
                return True  # not asked for: neither taken nor listed
            reason = (
                "path too long"
                if len(rel) > caps.max_path_len
                else None
                if is_dir
                else _kind(st.st_mode)
                or ("over max_files" if len(accepted) >= caps.max_files else None)
                or ("over max_file_bytes" if st.st_size > caps.max_file_bytes else None)
                or ("over max_total_bytes" if total + st.st_size > caps.max_total_bytes else None)
            )
            if reason:
                raise UntrustedFileError(rel, reason)
            if is_dir:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                try:
                    return folder(sub, rel + "/" if rel else "")
                finally:
                    os.close(sub)
            total += accept(fd, name, rel, st)
            accepted.append(rel)
        except OSError as exc:
            reason = exc.reason if isinstance(exc, UntrustedFileError) else _skip_reason(exc)
            if reason is None:
                raise
            skipped.append(Skipped(rel or ".", reason))
        return True

    try:  # root's folder is the caller's; root itself (a folder, or one file) is checked like any entry
        fd = os.open(root.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            is_dir = stat.S_ISDIR(os.stat(root.name, dir_fd=fd, follow_symlinks=False).st_mode)
            entry(fd, root.name, "" if is_dir else root.name)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return Listing()
    return Listing(sorted((root if is_dir else root.parent) / rel for rel in accepted), skipped)


def walk(root: Path, caps: Caps = Caps(), pattern: str | None = None) -> Listing:
    """Regular files under root (lstat only, symlinked dirs never entered), within caps; everything else listed as skipped."""
    # pattern: a Path.glob pattern without '**', on the path relative to root ('*.py': top level only).
    return _run(root, caps, pattern, lambda fd, name, rel, st: st.st_size)


def copy_tree(root: Path, dest: Path, caps: Caps = Caps()) -> Listing:
    """Copy the regular files of root into dest (same relative paths) through open_regular, bounded by caps."""

    def copy(dir_fd: int, name: str, rel: str, seen: os.stat_result) -> int:
        src = open_regular(name, dir_fd=dir_fd)
        try:
            st = os.fstat(src)
            # The caps were checked on the lstat size; the fd is what is read, so its size must be that one.
            if st.st_size != seen.st_size:
                raise UntrustedFileError(rel, "changed while read")
            target = Path(dest, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            left = st.st_size  # stop there even if the file grows while it is copied
            with open(target, "xb") as out:
                while left > 0 and (chunk := os.read(src, min(_CHUNK, left))):
                    out.write(chunk)
                    left -= len(chunk)
        finally:
            os.close(src)
        return st.st_size - left

    return _run(root, caps, None, copy)


def code_files(folder: Path) -> dict[str, str]:
    """The pipeline's Python files in an attempt folder (the code as it ran); links and files over 1 MiB are left out."""
    # The folder was writable by the generated code: a `model.py -> /etc/passwd` link must not be read here.
    files = {}
    for path in walk(folder, Caps(max_file_bytes=1024**2), pattern="*.py").files:
        try:
            files[path.name] = read_text(path)
        except UntrustedFileError:  # swapped for a link or FIFO since the walk
            continue
    return files
