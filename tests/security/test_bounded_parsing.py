"""Files written by generated code are parsed with bounds: no hang on a FIFO, no link followed, no GBs of
memory for a few KB on disk, no regex that backtracks for minutes (issue 14 part 4, issue 23 item 3)."""

from __future__ import annotations

import io
import os
import resource
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openpyxl
import pytest

from llmseg_mlflow.evaluation.predictions import PredictionsError, load_predictions
from llmseg_mlflow.pipeline import results, workbook
from llmseg_mlflow.pipeline.results import ResultsError, find_result_files, read_loss_curve, read_results


def within(seconds: float, call: Callable[[], object]) -> object:
    """call() in a thread; fail if it has not returned (or raised) after `seconds`. Returns what it returned,
    or the exception it raised."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return box[0]


def loss_workbook(path: Path, epochs: int = 3) -> list[float]:
    losses = [round(0.9 / (e + 1), 4) for e in range(epochs)]
    wb = openpyxl.Workbook()
    wb.active.append(list(range(1, epochs + 1)))
    wb.active.append(losses)
    wb.save(path)
    return losses


def with_sheet_xml(path: Path, sheet_xml: bytes, extra: dict[str, bytes] | None = None) -> None:
    """Rewrite a workbook with its first sheet's XML replaced (and extra members added)."""
    members = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            members[info.filename] = zf.read(info)
    members["xl/worksheets/sheet1.xml"] = sheet_xml
    members.update(extra or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def sheet_of(rows: int, cols: int) -> bytes:
    body = "".join(
        f'<row r="{r}">' + "".join(f"<c><v>0.{r}{c}</v></c>" for c in range(cols)) + "</row>"
        for r in range(1, rows + 1)
    )
    return (
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
        f"{body}</sheetData></worksheet>"
    ).encode()


# --- workbooks -------------------------------------------------------------------------------------


def test_number_parsing_is_linear_in_the_text() -> None:
    for text in ("1" * 100_000, "1" * 5000 + "x", "tensor(" + "1" * 100_000, "[" + "9" * 100_000 + "]"):
        start = time.perf_counter()
        number, label = workbook._cell(text)
        assert time.perf_counter() - start < 0.05
        assert np.isnan(number) and len(label) <= workbook.MAX_TEXT  # a digit string that long is no number
    assert workbook._cell("tensor(0.6931, device='cuda:0', grad_fn=<MeanBackward0>)")[0] == pytest.approx(0.6931)
    assert workbook._cell("[0.25]")[0] == 0.25 and workbook._cell("1e-3")[0] == 0.001


def test_long_digit_strings_in_a_workbook_finish_fast(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["Epoch", 1, 2, 3, 4])
    wb.active.append(["Loss", "1" * 100_000, "1" * 5000 + "x", 0.5, 0.25])  # the old regex: minutes per cell
    wb.save(tmp_path / "val_losses.xlsx")
    got = within(10, lambda: read_loss_curve(tmp_path / "val_losses.xlsx"))
    assert got[2:] == [0.5, 0.25] and all(np.isnan(v) for v in got[:2])


def test_a_cell_at_xfd1_is_ignored_and_the_loss_row_read(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append([1, 2, 3])
    wb.active.append([0.9, 0.6, 0.4])
    wb.active["XFD1"] = 1  # pandas read this as a 16384-column sheet, and the loss as [1, 2, 3, 1]
    wb.save(tmp_path / "train_losses.xlsx")
    # The child's address space is capped at 256 MB here: the read has to fit in it (pandas took GBs).
    results_memory = results.CHILD_MEMORY_BYTES
    results.CHILD_MEMORY_BYTES = 256 * 1024**2
    try:
        start = time.perf_counter()
        got = within(20, lambda: read_results(tmp_path))
        elapsed = time.perf_counter() - start
    finally:
        results.CHILD_MEMORY_BYTES = results_memory
    assert not isinstance(got, BaseException), got
    assert got.train_loss == [0.9, 0.6, 0.4]
    assert got.layouts["train_losses.xlsx"] == "row 2 of sheet 'Sheet'"
    assert any("stray cell(s) apart from the table ignored (XFD1)" in p for p in got.problems)
    assert elapsed < 10


def test_workbook_zip_bomb_is_refused_by_its_declared_sizes(tmp_path: Path) -> None:
    path = tmp_path / "train_losses.xlsx"
    loss_workbook(path)
    with_sheet_xml(path, sheet_of(2, 3), extra={"xl/media/pad.bin": bytes(60 * 1024**2)})
    assert path.stat().st_size < 1024**2
    with pytest.raises(ResultsError, match=r"^train_losses.xlsx: the workbook unpacks to 60 MB, over the 50 MB"):
        read_loss_curve(path)


def test_oversized_file_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train_losses.xlsx"
    loss_workbook(path)
    monkeypatch.setattr(results, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ResultsError, match=r"^train_losses.xlsx: not read: over max_bytes"):
        read_results(tmp_path)


def test_a_parse_past_the_timeout_is_killed_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loss_workbook(tmp_path / "train_losses.xlsx")
    path = tmp_path / "validation_dice_scores.xlsx"
    loss_workbook(path)
    with_sheet_xml(path, sheet_of(2000, 60))  # 120,000 cells: seconds to parse
    monkeypatch.setattr(results, "CHILD_TIMEOUT_S", 0.3)
    start = time.perf_counter()
    with pytest.raises(ResultsError, match=r"^validation_dice_scores.xlsx: reading it took longer than 0.3 s"):
        read_results(tmp_path)
    assert time.perf_counter() - start < 5


def test_a_parse_over_the_memory_limit_is_stopped_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "test_dice_scores.xlsx"
    loss_workbook(path)
    with_sheet_xml(path, sheet_of(2000, 60))
    monkeypatch.setattr(results, "CHILD_MEMORY_BYTES", 45 * 1024**2)
    with pytest.raises(ResultsError, match=r"^test_dice_scores.xlsx: reading it needed more than 45 MB of memory"):
        read_results(tmp_path)
    monkeypatch.undo()
    with_sheet_xml(path, sheet_of(2, 3))
    assert read_results(tmp_path).test_dice_batches == [0.1, 0.11, 0.12, 0.2, 0.21, 0.22]  # the reader recovers


def test_fifo_and_symlink_results_are_skipped_not_read(tmp_path: Path) -> None:
    out = tmp_path / "attempt" / "results"
    out.mkdir(parents=True)
    losses = loss_workbook(out / "train_losses.xlsx")
    os.mkfifo(out / "val_losses.xlsx")  # opening it for reading would wait for a writer forever
    outside = tmp_path / "secret.xlsx"
    loss_workbook(outside)
    (out / "validation_dice_scores.xlsx").symlink_to(outside)
    (out / "test_dice_scores.xlsx").symlink_to("/etc/passwd")
    found = within(2, lambda: find_result_files(tmp_path / "attempt"))
    assert found == {"train_losses.xlsx": out / "train_losses.xlsx"}
    got = within(20, lambda: read_results(tmp_path / "attempt"))
    assert not isinstance(got, BaseException), got
    assert got.train_loss == losses and got.val_loss == [] and got.test_dice_batches == []
    assert "val_losses.xlsx: skipped 'results/val_losses.xlsx' (fifo)" in got.problems
    assert "test_dice_scores.xlsx: skipped 'results/test_dice_scores.xlsx' (symlink)" in got.problems


def test_fifo_passed_directly_raises_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "train_losses.xlsx")
    got = within(2, lambda: read_loss_curve(tmp_path / "train_losses.xlsx"))
    assert isinstance(got, ResultsError) and "fifo" in str(got)


# --- predictions.npz -------------------------------------------------------------------------------


def npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez_compressed(path, **arrays)
    return path


def npy_bomb(path: Path, shape: tuple[int, int], names: list[str]) -> Path:
    """Members whose .npy header declares `shape` uint8, followed by that many compressed zero bytes (streamed)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    zeros = bytes(1 << 22)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name in names:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                member.write(header.getvalue())
                left = shape[0] * shape[1]
                while left:
                    left -= member.write(zeros[:left])
    return path


def test_correct_predictions_load_as_binary_uint8(tmp_path: Path) -> None:
    a = np.zeros((8, 6), np.uint8)
    a[2:4, 1:3] = 1
    b = np.full((5, 7), 255, np.uint8)  # a 0/255 mask
    c = np.array([[0.0, 0.7], [np.nan, 1.0]], np.float32)
    path = npz(tmp_path / "predictions.npz", {"a.png": a, "b.png": b, "c.png": c, "d.png": a.astype(bool)})
    got = load_predictions(path, {"a.png": (8, 6), "b.png": (5, 7), "c.png": (2, 2), "d.png": (8, 6)})
    assert list(got) == ["a.png", "b.png", "c.png", "d.png"]
    assert all(m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1} for m in got.values())
    assert (got["a.png"] == a).all() and got["b.png"].all() and got["c.png"].tolist() == [[0, 1], [0, 1]]


def test_forged_shape_is_refused_by_its_header(tmp_path: Path) -> None:
    path = npz(tmp_path / "predictions.npz", {"a.png": np.zeros((16, 16), np.uint8)})
    with pytest.raises(PredictionsError, match=r"'a.png' declares shape \(16, 16\), the held-out mask is \(32, 32\)"):
        load_predictions(path, {"a.png": (32, 32)})


def test_missing_extra_and_odd_entries_are_refused(tmp_path: Path) -> None:
    path = npz(tmp_path / "predictions.npz", {"a.png": np.zeros((4, 4), np.uint8), "x": np.zeros((4, 4))})
    with pytest.raises(
        PredictionsError,
        match=r"no mask for 1 held-out image\(s\): 'b.png'; 1 entries that are no "
        r"held-out image: 'x.npy'",
    ):
        load_predictions(path, {"a.png": (4, 4), "b.png": (4, 4)})
    objects = np.empty((4, 4), dtype=object)
    np.savez(tmp_path / "objects.npz", **{"a.png": objects})  # pickled: must never be loaded
    with pytest.raises(PredictionsError, match="dtype object, not bool, an integer or a float"):
        load_predictions(tmp_path / "objects.npz", {"a.png": (4, 4)})
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(PredictionsError, match=r"not an \.npz \(zip\) file"):
        load_predictions(tmp_path / "text.npz", {"a.png": (4, 4)})
    with pytest.raises(PredictionsError, match="not written"):
        load_predictions(tmp_path / "absent.npz", {"a.png": (4, 4)})


def test_member_size_that_disagrees_with_its_header_is_refused(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (4, 4)})
    with zipfile.ZipFile(tmp_path / "predictions.npz", "w") as zf:
        zf.writestr("a.png.npy", header.getvalue() + bytes(1000))
    with pytest.raises(PredictionsError, match=r"declares 1\d{3} bytes uncompressed, its header says \d+"):
        load_predictions(tmp_path / "predictions.npz", {"a.png": (4, 4)})


def test_npz_bomb_is_refused_by_header_without_allocating(tmp_path: Path) -> None:
    path = npy_bomb(tmp_path / "predictions.npz", (16000, 16000), ["a.png"])  # 256 MB declared
    assert path.stat().st_size < 3 * 1024**2
    expected = {"a.png": (512, 512)}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(PredictionsError, match=r"'a.png' declares shape \(16000, 16000\)"):
            load_predictions(path, expected)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert peak < 10 * 1024**2 and grown_mb < 200 and elapsed < 1


def test_fifo_and_symlink_predictions_are_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "predictions.npz")
    got = within(2, lambda: load_predictions(tmp_path / "predictions.npz", {"a.png": (4, 4)}))
    assert isinstance(got, PredictionsError) and "fifo" in str(got)
    real = npz(tmp_path / "real.npz", {"a.png": np.zeros((4, 4), np.uint8)})
    (tmp_path / "link.npz").symlink_to(real)
    with pytest.raises(PredictionsError, match="symlink"):
        load_predictions(tmp_path / "link.npz", {"a.png": (4, 4)})
