"""The outputs as artifacts of the kind=analysis run, each sent as soon as it is final.

One request per file is what uploading costs, so files go while the report is still being drawn rather
than all at the end. They wait for `open()`: until the series have arrived the server is busy serving them,
and an upload would only push the report's data back.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mlflow.tracking import MlflowClient


class Publisher:
    """Uploads files under `folder` to run `run_id`, keeping their relative paths."""

    def __init__(self, client: MlflowClient, run_id: str, folder: Path, threads: int = 8) -> None:
        self.client, self.run_id, self.folder = client, run_id, folder
        self._pool = ThreadPoolExecutor(threads)
        self._lock = threading.Lock()
        self._open = False
        self._waiting: list[Path] = []
        self._sent: dict[Path, Future] = {}

    def add(self, path: Path) -> None:
        """Upload `path` (a final output file) once open; callable from any thread, once per file."""
        with self._lock:
            if path in self._sent or path in self._waiting:
                return
            if self._open:
                self._sent[path] = self._pool.submit(self._upload, path)
            else:
                self._waiting.append(path)

    def open(self) -> None:
        """Start uploading (what was added so far, then each file as it is added); callable from any thread."""
        with self._lock:
            self._open = True
            waiting, self._waiting = self._waiting, []
            for path in waiting:
                self._sent[path] = self._pool.submit(self._upload, path)

    def finish(self, names: tuple[str, ...]) -> int:
        """Upload every file under folder/name (for each name) not sent yet, wait for all; returns how many went."""
        for name in names:
            top = self.folder / name
            for path in [top] if top.is_file() else sorted(top.rglob("*")) if top.is_dir() else []:
                if path.is_file():
                    self.add(path)
        self.open()
        with self._lock:
            futures = list(self._sent.values())
        for future in futures:
            future.result()  # an upload that failed says so here
        return len(futures)

    def close(self) -> None:
        """Stop (uploads not started are dropped); safe to call twice."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _upload(self, path: Path) -> None:
        rel = path.parent.relative_to(self.folder).as_posix()
        self.client.log_artifact(self.run_id, str(path), None if rel == "." else rel)
