"""A real `mlflow server` for benchmarks: sqlite with 1 worker (the setup DESIGN.md measured), or a
PostgreSQL cluster under the same folder with several workers (a lab's setup, issue #20)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from llmseg_mlflow.tracking.local_server import THROWAWAY_SETTINGS, free_port, study_server


@contextlib.contextmanager
def running_server(root: Path, store: str = "sqlite", workers: int = 1) -> Iterator[str]:
    """The server's URI while the block runs; its store (and cluster) stay under root for a later run."""
    server, pg = study_server(root, store, free_port(), workers, settings=THROWAWAY_SETTINGS)
    try:
        yield server.start().uri
    finally:
        server.stop()
        if pg is not None:
            pg.stop()
