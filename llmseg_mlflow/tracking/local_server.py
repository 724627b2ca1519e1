"""Tracking servers on this machine: `mlflow server` on sqlite or on a PostgreSQL cluster started here.

One implementation for `llmseg server`, the tests and the benchmarks. PostgreSQL refuses to run as
root, so as root the cluster belongs to an unprivileged user (Debian's `postgres` by default).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from llmseg_mlflow.errors import UsageError

PG_DATABASE = "mlflow"
PG_ROLE = "llmseg"  # the cluster's superuser; trust auth on 127.0.0.1 only (see Postgres.init)
# Durability off: for throwaway clusters (tests, benchmarks), never for a study's own server.
THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server program (Debian keeps them off PATH under /usr/lib/postgresql/N/bin)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if versions:
        return versions[-1]
    raise UsageError(f"PostgreSQL's {name} was not found: install the server (`apt-get install -y postgresql`)")


def _owner_for_root(user: str | None) -> pwd.struct_passwd | None:
    """Who runs the cluster: None (ourselves) unless we are root, who must hand it to another user."""
    if os.geteuid() != 0:
        return None
    name = user or "postgres"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise UsageError(
            f"PostgreSQL does not run as root and the user {name!r} does not exist: install the server "
            "(`apt-get install -y postgresql` creates `postgres`) or name another user with --pg-user"
        ) from None


@dataclass
class Postgres:
    """A PostgreSQL cluster in data_dir, listening on 127.0.0.1:port only, run by `owner` when we are root."""

    data_dir: Path
    port: int
    user: str | None = None
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self.owner = _owner_for_root(self.user)

    @property
    def log_file(self) -> Path:
        """The server's log (beside the data, so it survives a restart)."""
        return self.data_dir.parent / "postgres.log"

    def uri(self, database: str = PG_DATABASE) -> str:
        """SQLAlchemy URI of a database in this cluster, for MLflow."""
        return f"postgresql+psycopg://{PG_ROLE}@127.0.0.1:{self.port}/{database}"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        # As root: the owner's uid/gid and none of root's groups; a neutral cwd the owner can enter.
        owner = self.owner
        done = subprocess.run(
            cmd,
            cwd="/",
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
        )
        if check and done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-1500:]
            raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {done.returncode}): {tail}")
        return done

    def _own(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self.owner:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
            if self._run("test", "-w", str(path), check=False).returncode != 0:
                raise UsageError(
                    f"{path} is not reachable by the user {self.owner.pw_name!r}, who runs PostgreSQL (a parent "
                    "folder is private to root): choose a folder under /srv or /tmp, or another --pg-user"
                )

    def init(self) -> None:
        """Create the cluster unless data_dir holds one (trust auth: it listens on 127.0.0.1 only)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._own(self.data_dir.parent)
        self._own(self.data_dir)
        self._run(pg_bin("initdb"), "-D", str(self.data_dir), "-U", PG_ROLE, "--auth=trust", "-E", "UTF8")

    def start(self, timeout_s: float = 60) -> None:
        """Start the server (waits until it accepts connections)."""
        options = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": "''"}
        opts = " ".join(f"-c {k}={v}" for k, v in {**options, **self.settings}.items())
        self._run(
            pg_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-o", opts,
            "-w", "-t", str(int(timeout_s)), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate` is a crash: no checkpoint, recovery at the next start)."""
        self._run(pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def create_database(self, name: str = PG_DATABASE) -> str:
        """Create a database unless it exists; its URI."""
        import psycopg

        with psycopg.connect(self.uri("postgres").replace("+psycopg", ""), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)


@dataclass
class MlflowServer:
    """`mlflow server` in a process group of its own (so a kill ends its workers too)."""

    backend_uri: str
    artifacts: Path
    port: int = field(default_factory=free_port)
    workers: int = 1
    host: str = "127.0.0.1"
    log_file: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        """The tracking URI clients use."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        """The `mlflow server` command line."""
        return [
            sys.executable, "-m", "mlflow", "server", "--host", self.host, "--port", str(self.port),
            "--backend-store-uri", self.backend_uri, "--artifacts-destination", str(self.artifacts),
            "--workers", str(self.workers),
        ]  # fmt: skip

    def start(self, timeout_s: float = 120) -> MlflowServer:
        """Start it and wait until /health answers."""
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log_file.open("a") if self.log_file else open(os.devnull, "w") as log:  # the child keeps its copy
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    tail = self.log_file.read_text()[-3000:] if self.log_file else ""
                    raise RuntimeError(f"mlflow server did not start: {tail}") from None
                time.sleep(0.3)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the server and its workers, as a crash would."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout_s: float = 30) -> None:
        """Stop it gracefully, killing it after timeout_s."""
        self._signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


def study_server(
    folder: Path, store: str = "sqlite", port: int = 5000, workers: int = 4, host: str = "127.0.0.1",
    pg_user: str | None = None, settings: dict[str, str] | None = None,
) -> tuple[MlflowServer, Postgres | None]:  # fmt: skip
    """A study's tracking server with everything under folder (store, artifacts, logs), not yet started;
    `settings`: the cluster's (THROWAWAY_SETTINGS for benchmarks)."""
    from llmseg_mlflow.tracking.runs import check_database

    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    pg = None
    if store == "sqlite":
        backend = f"sqlite:///{folder / 'mlflow.db'}"
    elif store == "postgres":
        pg = Postgres(folder / "postgres" / "data", free_port(), user=pg_user, settings=settings or {})
        pg.init()
        pg.stop()  # a cluster an earlier server left running (its port is unknown): start it afresh on ours
        pg.start()
        backend = pg.create_database()
        check_database(backend)
    else:
        raise UsageError(f"unknown store {store!r}: use sqlite or postgres")
    server = MlflowServer(backend, folder / "artifacts", port, workers, host, log_file=folder / "server.log")
    return server, pg


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (systemd, docker stop) ends the server like Ctrl-C


def serve_forever(server: MlflowServer, pg: Postgres | None, say=print) -> None:
    """Run the server until Ctrl-C or SIGTERM, then stop it and the cluster."""
    stop = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start()
        say(f"tracking server: {server.uri}  (store {server.backend_uri}, {server.workers} workers)")
        say(f"  export MLFLOW_TRACKING_URI={server.uri}   # then: llmseg sweep STUDY.yaml; Ctrl-C stops the server")
        say(f"  log: {server.log_file}")
        assert server.proc is not None
        code = server.proc.wait()
        raise UsageError(f"mlflow server exited with code {code}; see {server.log_file}")
    except KeyboardInterrupt:
        say("stopping the tracking server")
    finally:
        server.stop()
        if pg is not None:
            pg.stop()
        signal.signal(signal.SIGTERM, stop)
