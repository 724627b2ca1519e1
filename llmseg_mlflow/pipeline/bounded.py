"""Run a parse function on untrusted bytes in a forked child with memory, CPU and time limits.

One long-lived `python -m llmseg_mlflow.pipeline.bounded --serve` per harness process (started on first use)
receives framed requests on stdin; for each request it forks a fresh child that sets RLIMIT_AS and RLIMIT_CPU,
runs the named function on each blob in turn, and writes JSON lines to a pipe; the server kills that child after
its timeout. Forking the single-threaded server is safe and cheap (milliseconds), where forking the harness
(threads, GBs mapped by torch) is not, and a new interpreter per file would cost ~0.3 s of imports: the
function's module, and whatever its `prepare` hook imports, are imported once in the server and shared by every
child.

This module knows nothing of what is parsed: `run` takes a module-level function of this package (sent by name),
jobs of (name, JSON-able arguments, bytes), and returns each job's JSON-able value, the message of the `Refused`
it raised, or a `Failure` (timeout, CPU, memory, crash, or the server not answering) for the caller to word.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAX_MESSAGE = 2000  # characters of a Refused message sent back
# Kinds of Failure: the child died (DIED), or the server did not answer as it should.
DIED = ("timeout", "cpu", "signal", "memory", "crash")
_PACKAGE = __name__.split(".")[0] + "."


class Refused(Exception):
    """Raised by a parse function for bytes it won't read: its message is the job's answer; later jobs don't run."""


@dataclass(frozen=True)
class Answer:
    """One job's answer: the function's JSON-able value, or the message of the Refused it raised."""

    name: str
    value: object = None
    refused: str | None = None


@dataclass(frozen=True)
class Failure:
    """Why a request stopped short: kind (one of DIED, or 'unavailable', 'stopped', 'malformed'), the job it was
    on, and for a child that died, how in words ('took longer than 60 s')."""

    kind: str
    job: str
    how: str = ""


@dataclass(frozen=True)
class Outcome:
    """The answers of the jobs that finished, in order, and the failure that stopped the rest (None if none)."""

    answers: list[Answer]
    failure: Failure | None


def size_text(n: float) -> str:
    """A memory size in words: '2 GB', '45 MB'."""
    return f"{n / 1024**3:g} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


def _name_of(function: Callable) -> str:
    name = f"{function.__module__}:{function.__qualname__}"
    if not function.__module__.startswith(_PACKAGE) or "." in function.__qualname__:
        raise ValueError(f"{name}: not a module-level function of this package")
    return name


# --- the server and its children (in `python -m llmseg_mlflow.pipeline.bounded --serve`) -------------

_PRIVATE_FDS: list[int] = []  # the server's protocol fds, closed in its children
_PREPARED: set[str] = set()  # prepare hooks already run in this server


def _read_exact(fd: int, size: int, deadline: float | None = None) -> bytes:
    """size bytes from fd; EOFError if it closes first, TimeoutError past deadline (time.monotonic())."""
    chunks, left = [], size
    while left > 0:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _resolve(name: str) -> Callable:
    """The function a request names ('package.module:function'), imported in the server; this package only."""
    module, _, attr = name.partition(":")
    if not module.startswith(_PACKAGE) or not attr.isidentifier():
        raise ValueError(f"{name[:200]!r} is not a function of this package")
    return getattr(importlib.import_module(module), attr)


def _jobs_in_child(function: Callable, request: dict, blobs: list[bytes], out: int) -> None:
    """The forked child: limits first, then one line per job ('P name' before, 'R json' after) on out."""
    import resource

    for limit, value in (
        (resource.RLIMIT_AS, int(request["memory"])),
        (resource.RLIMIT_CPU, int(request["timeout"]) + 1),
    ):
        _soft, hard = resource.getrlimit(limit)
        if hard == resource.RLIM_INFINITY or value < hard:
            resource.setrlimit(limit, (value, hard))
    for job, data in zip(request["jobs"], blobs):
        _write_all(out, f"P {job['name']}\n".encode())
        try:
            result = {"name": job["name"], "ok": True, "value": function(job["name"], data, **job["args"])}
        except Refused as exc:
            result = {"name": job["name"], "ok": False, "error": str(exc)[:MAX_MESSAGE]}
        _write_all(out, b"R " + json.dumps(result).encode() + b"\n")
        if not result["ok"]:
            break


def _run_request(request: dict, blobs: list[bytes]) -> dict:
    """Fork a child for one request, collect its lines within the timeout, kill it past that."""
    if request.get("prepare") and request["prepare"] not in _PREPARED:
        _resolve(request["prepare"])()  # before the function's module is imported, and before any fork
        _PREPARED.add(request["prepare"])
    function = _resolve(request["function"])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            for fd in (read_end, *_PRIVATE_FDS):
                os.close(fd)
            _jobs_in_child(function, request, blobs, write_end)
        except MemoryError:
            code = 3
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as a crash
            code = 4
            try:
                _write_all(write_end, f"X {type(exc).__name__}: {exc}"[:300].replace("\n", " ").encode() + b"\n")
            except BaseException:  # noqa: BLE001
                pass
        os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + float(request["timeout"])
    chunks, timed_out = [], False
    try:
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([read_end], [], [], wait)[0]:
                timed_out = True
                break
            chunk = os.read(read_end, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    results = [json.loads(line[2:]) for line in lines if line.startswith("R ")]
    current = next((line[2:] for line in reversed(lines) if line.startswith("P ")), None)
    crash = next((line[2:] for line in lines if line.startswith("X ")), "")
    died = None
    if timed_out:
        died = ("timeout", f"took longer than {float(request['timeout']):g} s")
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        died = (
            ("cpu", f"used more than {float(request['timeout']):g} s of CPU")
            if sig == signal.SIGXCPU
            else ("signal", f"was killed by signal {sig}")
        )
    elif os.WEXITSTATUS(status) == 3:
        died = ("memory", f"needed more than {size_text(int(request['memory']))} of memory")
    elif os.WEXITSTATUS(status) != 0:
        died = ("crash", f"crashed (exit status {os.WEXITSTATUS(status)}{': ' + crash if crash else ''})")
    return {"results": results, "died": died, "current": current}


def _serve() -> int:
    """`python -m llmseg_mlflow.pipeline.bounded --serve`: framed requests on stdin, framed answers on stdout."""
    # Keep the protocol's fds private: a stray print in a child must not corrupt a frame.
    in_fd, out_fd = os.dup(0), os.dup(1)
    _PRIVATE_FDS[:] = [in_fd, out_fd]
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    while True:
        try:
            size = int.from_bytes(_read_exact(in_fd, 8), "big")
            header_size = int.from_bytes(_read_exact(in_fd, 8), "big")
            request = json.loads(_read_exact(in_fd, header_size))
            blobs = [_read_exact(in_fd, int(job["size"])) for job in request["jobs"]]
        except EOFError:  # the harness closed the pipe (or exited)
            return 0
        del size
        answer = json.dumps(_run_request(request, blobs)).encode()
        _write_all(out_fd, _frame(answer))


# --- the harness's side ------------------------------------------------------------------------------

_server_lock = threading.Lock()
_server: tuple[int, subprocess.Popen] | None = None  # (pid of the process that started it, the server)


def _start_server() -> subprocess.Popen:
    package_root = str(Path(__file__).resolve().parents[2])  # holds llmseg_mlflow: the checkout or site-packages
    # It parses hostile bytes: it gets no keys or tokens, only what Python needs to start.
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV") if k in os.environ}
    env = {
        **keep,
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "llmseg_mlflow.pipeline.bounded", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
        env=env,
        cwd=package_root,
    )


def _ask_server(request: dict, blobs: list[bytes]) -> dict | Failure:
    """Send one request to this process's reader server (started on first use) and wait for its answer."""
    global _server
    header = json.dumps(request).encode()
    body = len(header).to_bytes(8, "big") + header + b"".join(blobs)
    with _server_lock:
        for attempt in (1, 2):  # a server that died since its last use is replaced once
            if _server is None or _server[0] != os.getpid() or _server[1].poll() is not None:
                _server = (os.getpid(), _start_server())
                atexit.unregister(_stop_server)
                atexit.register(_stop_server)
            proc = _server[1]
            assert proc.stdin is not None and proc.stdout is not None  # _start_server opens both as pipes
            try:
                _write_all(proc.stdin.fileno(), _frame(body))
            except BrokenPipeError:
                _stop_server()
                if attempt == 1:
                    continue
                return Failure("unavailable", request["jobs"][0]["name"])
            # Its own child is killed after the timeout; the margin covers starting the server and transfers.
            deadline = time.monotonic() + float(request["timeout"]) + 30
            try:
                fd = proc.stdout.fileno()
                size = int.from_bytes(_read_exact(fd, 8, deadline), "big")
                return json.loads(_read_exact(fd, size, deadline))
            except (EOFError, TimeoutError, OSError, ValueError):
                _stop_server()
                return Failure("stopped", request["jobs"][0]["name"])
            except BaseException:  # interrupted mid-request: its late answer must not be read as the next one's
                _stop_server()
                raise
    raise AssertionError("unreachable")


def _stop_server() -> None:
    global _server
    if _server is not None and _server[0] == os.getpid():
        _server[1].kill()
        _server[1].wait()
    _server = None


def _answers(results: list, names: list[str]) -> tuple[list[Answer], Failure | None]:
    """The server's per-job lines as Answers, up to the first that is not one (a 'malformed' Failure there)."""
    answers: list[Answer] = []
    for result, name in zip(results, names):
        if not isinstance(result, dict) or result.get("name") != name or not isinstance(result.get("ok"), bool):
            return answers, Failure("malformed", name)
        if result["ok"]:
            answers.append(Answer(name, value=result.get("value")))
        elif isinstance(result.get("error"), str):
            answers.append(Answer(name, refused=result["error"][:MAX_MESSAGE]))
        else:
            return answers, Failure("malformed", name)
    return answers, None


def run(
    function: Callable,
    jobs: list[tuple[str, dict, bytes]],
    memory_bytes: int,
    timeout_s: float,
    prepare: Callable[[], None] | None = None,
) -> Outcome:
    """Run function(name, data, **args) for each (name, args, data) job, in order, in one limited child process."""
    names = [name for name, _, _ in jobs]
    request = {
        "function": _name_of(function),
        "prepare": prepare and _name_of(prepare),
        "jobs": [{"name": n, "args": a, "size": len(d)} for n, a, d in jobs],
        "memory": memory_bytes,
        "timeout": timeout_s,
    }
    answer = _ask_server(request, [d for _, _, d in jobs])
    if isinstance(answer, Failure):
        return Outcome([], answer)
    try:
        results, died, current = answer["results"], answer["died"], answer["current"]
        assert isinstance(results, list) and len(results) <= len(jobs)
        assert died is None or (
            isinstance(died, list)
            and len(died) == 2
            and died[0] in DIED
            and isinstance(died[1], str)
            and (current is None or current in names)
        )
    except (AssertionError, KeyError, TypeError):
        return Outcome([], Failure("malformed", names[0]))
    answers, failure = _answers(results, names)
    if failure is None and died is not None:
        failure = Failure(died[0], current or names[min(len(answers), len(names) - 1)], died[1][:300])
    if failure is None and len(answers) < len(jobs) and all(a.refused is None for a in answers):
        failure = Failure("malformed", names[len(answers)])
    return Outcome(answers, failure)


if __name__ == "__main__":
    # Serve with the package's copy of this module, not __main__'s: the parse functions raise its Refused.
    from llmseg_mlflow.pipeline import bounded

    sys.exit(bounded._serve() if sys.argv[1:] == ["--serve"] else 2)
