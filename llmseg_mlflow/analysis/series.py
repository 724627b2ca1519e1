"""The roots' series (curves, per-image Dice): cached runs at once, the rest fetched in bulk in stages.

The stages run one after another on a background thread, in the order the report needs them:
validation loss (curve figures), then per-image Dice (Dice figures, tests, grids), then, once the driver
says so (start_rest), the curves that only go to data/curves.csv. The driver builds each part of the
report as soon as its stage has arrived, so this process draws while the server serves the next stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from llmseg_mlflow.analysis.cache import RunCache, RunSeries, fingerprint
from llmseg_mlflow.analysis.fetch import HistoryFetcher, Points, Root
from llmseg_mlflow.analysis.table import IMAGE_DICE, SERIES_KEYS

STAGES = (("val_loss",), (IMAGE_DICE,), tuple(k for k in SERIES_KEYS if k not in ("val_loss", IMAGE_DICE)))

Fetched = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]  # key -> run id -> (steps, values)


def group_points(points: Points) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{run id: (steps, values)}, steps ascending, the value logged last per step (a re-evaluation wins)."""
    if not len(points):
        return {}
    runs, code = np.unique(points.run_id.astype(str), return_inverse=True)
    order = np.lexsort((np.arange(len(points)), points.timestamp, points.step, code))
    code, step, value = code[order], points.step[order], points.value[order]
    last = np.r_[(code[1:] != code[:-1]) | (step[1:] != step[:-1]), True]
    code, step, value = code[last], step[last], value[last]
    bounds = np.flatnonzero(np.r_[True, code[1:] != code[:-1], True])
    return {str(runs[code[a]]): (step[a:b], value[a:b]) for a, b in zip(bounds[:-1], bounds[1:])}


class SeriesFetch:
    """Every root's series: `series` holds the cached runs at once and each stage once `wait`ed for."""

    def __init__(
        self, roots: list[Root], cache: RunCache, say: Callable[[str], None], on_done: Callable[[], None] | None = None
    ) -> None:
        self.cache = cache
        self._on_done = on_done  # called (on the fetching thread) once the last stage has arrived
        self.series: dict[str, RunSeries] = {}
        self.todo: list[Root] = []
        for run in roots:
            hit = cache.get(run)
            if hit is not None:
                self.series[run.run_id] = hit
            else:
                self.todo.append(run)
                self.series[run.run_id] = RunSeries(fingerprint(run), {})
        if self.todo:
            say(
                f"fetching curves and per-image Dice of {len(self.todo)} run(s) in bulk "
                f"({len(roots) - len(self.todo)} cached)"
            )
        else:
            say(f"all {len(roots)} run(s) unchanged since the last analyze: using the local cache")
        self._thread = ThreadPoolExecutor(1)
        self._lock = threading.Lock()
        self._bar = tqdm(
            total=sum(len(self._wanted(k)[0]) for stage in STAGES for k in stage),
            desc="metric histories",
            unit="run",
            disable=not self.todo,
        )
        # The last stage waits for start_rest(): until then the server is free for the grids' downloads.
        self._stages: list[Future] = [self._thread.submit(self._fetch_stage, stage) for stage in STAGES[:-1]]

    @property
    def fetched(self) -> int:
        """How many runs were not in the cache."""
        return len(self.todo)

    def _wanted(self, key: str) -> tuple[list[str], int]:
        """Run ids that logged `key`, and the most points one of them may have."""
        ids = [r.run_id for r in self.todo if key in r.metrics]
        field = "heldout_n" if key == IMAGE_DICE else "epochs_trained"
        return ids, max([int(r.metrics.get(field, 0)) for r in self.todo] + [1])

    def fetch(self, wanted: dict[str, tuple[list[str], int]], progress: Callable[[int], None]) -> Fetched:
        """One stage from the server: {key: {run id: (steps, values)}} (the bulk endpoint)."""
        points = HistoryFetcher().fetch(wanted, progress=progress)
        return {key: group_points(p) for key, p in points.items()}

    def _fetch_stage(self, keys: tuple[str, ...]) -> Fetched:
        wanted = {k: self._wanted(k) for k in keys}
        if not any(ids for ids, _ in wanted.values()):
            return {}
        return self.fetch(wanted, self._bar.update)

    def start_rest(self) -> None:
        """Start fetching the last stage (the curves that only go to data/curves.csv); callable from any thread."""
        with self._lock:
            if len(self._stages) < len(STAGES):
                last = self._thread.submit(self._fetch_stage, STAGES[-1])
                on_done = self._on_done
                if on_done is not None:
                    last.add_done_callback(lambda _: on_done())
                self._stages.append(last)

    def wait(self, stage: int) -> None:
        """Block until stage `stage` (an index into STAGES) has arrived, and merge it into `series`."""
        for key, by_run in self._stages[stage].result().items():
            for run_id, xy in by_run.items():
                self.series[run_id].series[key] = xy

    def finish(self) -> None:
        """Wait for every stage, then keep the finished runs in the cache for the next analyze."""
        self.start_rest()
        for stage in range(len(STAGES)):
            self.wait(stage)
        self.close()
        for run in self.todo:
            self.cache.put(run, self.series[run.run_id])
        self.cache.save()

    def close(self) -> None:
        """Stop fetching (stages not started are dropped); safe to call twice."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        self._bar.close()
