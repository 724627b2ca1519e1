"""Reading the Excel files generated pipelines write, in the layouts LLM code really produces."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from llmseg_mlflow.pipeline.results import (
    ResultsError,
    find_result_files,
    read_dice_table,
    read_loss_curve,
    read_results,
)

Writer = Callable[[Path, list[int], list[float]], None]


# Each writer is what some LLM wrote for "first row epoch numbers, second row the loss" (or not).
def across_plain(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame([epochs, losses]).to_excel(p, index=False, header=False)


def across_pandas_defaults(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame([epochs, losses]).to_excel(p)  # adds an index column 0,1 and a header row 0..n-1


def across_index_only(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame([epochs, losses]).to_excel(p, header=False)


def across_header_only(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame([epochs, losses]).to_excel(p, index=False)


def across_epochs_as_columns(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame([losses], columns=epochs).to_excel(p, index=False)


def across_labelled_transpose(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame({"Epoch": epochs, "Train Loss": losses}).T.to_excel(p, header=False)


def across_labelled_named_columns(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame([losses], columns=[f"Epoch {e}" for e in epochs], index=["Validation Loss"]).to_excel(p)


def across_openpyxl_labels(p: Path, epochs: list[int], losses: list[float]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Epoch"] + epochs)
    ws.append(["Train Loss"] + losses)
    wb.save(p)


def across_openpyxl_cells(p: Path, epochs: list[int], losses: list[float]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    for col, (epoch, loss) in enumerate(zip(epochs, losses), start=1):
        ws.cell(row=1, column=col, value=epoch)
        ws.cell(row=2, column=col, value=loss)
    wb.save(p)


def down_columns(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame({"Epoch": epochs, "Train Loss": losses}).to_excel(p, index=False)


def down_columns_with_index(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame({"epoch": epochs, "loss": losses}).to_excel(p)


def down_named_index(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame({"Epoch": epochs, "Validation Loss": losses}).set_index("Epoch").to_excel(p)


def down_openpyxl(p: Path, epochs: list[int], losses: list[float]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Epoch", "Loss"])
    for epoch, loss in zip(epochs, losses):
        ws.append([epoch, loss])
    wb.save(p)


def down_loss_only_with_index(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame({"Train Loss": losses}).to_excel(p)


def down_bare_list_defaults(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame(losses).to_excel(p)


def down_bare_list_header(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame(losses).to_excel(p, index=False)  # a header cell "0" above the values


def down_no_header(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame({"e": epochs, "l": losses}).to_excel(p, index=False, header=False)


def row_of_values(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame([losses]).to_excel(p, index=False, header=False)


def column_of_values(p: Path, epochs: list[int], losses: list[float]) -> None:
    pd.DataFrame(losses).to_excel(p, index=False, header=False)


WRITERS: list[Writer] = [
    across_plain,
    across_pandas_defaults,
    across_index_only,
    across_header_only,
    across_epochs_as_columns,
    across_labelled_transpose,
    across_labelled_named_columns,
    across_openpyxl_labels,
    across_openpyxl_cells,
    down_columns,
    down_columns_with_index,
    down_named_index,
    down_openpyxl,
    down_loss_only_with_index,
    down_bare_list_defaults,
    down_bare_list_header,
    down_no_header,
    row_of_values,
    column_of_values,
]


@pytest.mark.parametrize("n_epochs", [1, 2, 3, 7])
@pytest.mark.parametrize("write", WRITERS, ids=lambda w: w.__name__)
def test_loss_curve_read_back_in_every_layout(tmp_path: Path, write: Writer, n_epochs: int) -> None:
    # Losses that start above 1 and land on round numbers are the hard case for telling them from epochs.
    losses = [1.25, 0.5, 0.375, 0.3, 0.25, 0.2, 0.19][:n_epochs]
    path = tmp_path / "train_losses.xlsx"
    write(path, list(range(1, n_epochs + 1)), losses)
    assert read_loss_curve(path) == pytest.approx(losses)


@pytest.mark.parametrize("n_epochs", [1, 4])
def test_epoch_numbers_starting_at_zero(tmp_path: Path, n_epochs: int) -> None:
    losses = [0.7, 0.6, 0.5, 0.4][:n_epochs]
    path = tmp_path / "val_losses.xlsx"
    pd.DataFrame([list(range(n_epochs)), losses]).to_excel(path, index=False, header=False)
    assert read_loss_curve(path) == pytest.approx(losses)


def test_file_with_both_curves_gives_the_one_its_name_asks_for(tmp_path: Path) -> None:
    frame = pd.DataFrame({"Epoch": [1], "Train Loss": [0.9], "Val Loss": [0.8]})
    frame.to_excel(tmp_path / "val_losses.xlsx", index=False)
    frame.to_excel(tmp_path / "train_losses.xlsx", index=False)
    assert read_loss_curve(tmp_path / "val_losses.xlsx") == [0.8]
    assert read_loss_curve(tmp_path / "train_losses.xlsx") == [0.9]


def test_tensor_strings_and_empty_sheets_before_the_data(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()  # the default sheet stays empty, the data goes to a new one
    ws = wb.create_sheet("Losses")
    ws.append(["Epoch", 1, 2])
    ws.append(["Loss", "tensor(0.6931, device='cuda:0', grad_fn=<MeanBackward0>)", "tensor(0.5000)"])
    wb.save(tmp_path / "train_losses.xlsx")
    assert read_loss_curve(tmp_path / "train_losses.xlsx") == pytest.approx([0.6931, 0.5])


# --- Dice tables ---------------------------------------------------------------------------------

EPOCH_DICE = [[0.5, 0.625, 0.75], [0.75, 0.875, 1.0], [0.0, 0.25]]  # ragged: a last, smaller batch missing


def dice_defaults(p: Path, rows: list[list[float]]) -> None:
    pd.DataFrame([r + [math.nan] * (3 - len(r)) for r in rows]).to_excel(p)


def dice_no_index(p: Path, rows: list[list[float]]) -> None:
    pd.DataFrame([r + [math.nan] * (3 - len(r)) for r in rows]).to_excel(p, index=False)


def dice_batch_headers(p: Path, rows: list[list[float]]) -> None:
    frame = pd.DataFrame([r + [math.nan] * (3 - len(r)) for r in rows], columns=["Batch 1", "Batch 2", "Batch 3"])
    frame.to_excel(p, index=False)


def dice_epoch_column(p: Path, rows: list[list[float]]) -> None:
    frame = pd.DataFrame([r + [math.nan] * (3 - len(r)) for r in rows], columns=[f"Batch_{i}" for i in range(3)])
    frame.insert(0, "Epoch", range(1, len(rows) + 1))
    frame.to_excel(p, index=False)


def dice_openpyxl_rows(p: Path, rows: list[list[float]]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    wb.save(p)


def dice_openpyxl_labels(p: Path, rows: list[list[float]]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    for epoch, row in enumerate(rows, start=1):
        ws.append([f"Epoch {epoch}"] + row)
    wb.save(p)


def dice_epochs_as_columns(p: Path, rows: list[list[float]]) -> None:
    # The prompt asks for epochs as rows; this LLM made one column per epoch instead.
    pd.DataFrame({f"Epoch {e}": pd.Series(r) for e, r in enumerate(rows, start=1)}).to_excel(p, index=False)


@pytest.mark.parametrize("n_epochs", [1, 3])
@pytest.mark.parametrize(
    "write",
    [
        dice_defaults,
        dice_no_index,
        dice_batch_headers,
        dice_epoch_column,
        dice_openpyxl_rows,
        dice_openpyxl_labels,
        dice_epochs_as_columns,
    ],
    ids=lambda w: w.__name__,
)
def test_dice_table_read_back(tmp_path: Path, write: Callable[[Path, list[list[float]]], None], n_epochs: int) -> None:
    path = tmp_path / "validation_dice_scores.xlsx"
    write(path, EPOCH_DICE[:n_epochs])
    assert read_dice_table(path) == EPOCH_DICE[:n_epochs]


# --- whole folders -------------------------------------------------------------------------------


def write_full_run(save: Path) -> None:
    """The four files as a typical generated train.py writes them."""
    save.mkdir(parents=True)
    epochs = [1, 2, 3]
    pd.DataFrame([epochs, [0.9, 0.6, 0.4]]).to_excel(save / "train_losses.xlsx", index=False, header=False)
    pd.DataFrame({"Epoch": epochs, "Validation Loss": [0.8, 0.7, 0.65]}).to_excel(save / "val_losses.xlsx")
    pd.DataFrame([[0.5, 0.7], [0.6, 0.8], [0.7, 0.9]]).to_excel(save / "validation_dice_scores.xlsx")
    pd.DataFrame([[0.75, 0.25, 0.5]]).to_excel(save / "test_dice_scores.xlsx", index=False)


def test_read_results_of_a_full_run(tmp_path: Path) -> None:
    write_full_run(tmp_path / "attempt" / "outputs")
    results = read_results(tmp_path / "attempt")
    assert results.train_loss == pytest.approx([0.9, 0.6, 0.4])
    assert results.val_loss == pytest.approx([0.8, 0.7, 0.65])
    assert results.val_dice_batches == [[0.5, 0.7], [0.6, 0.8], [0.7, 0.9]]
    assert results.val_dice == pytest.approx([0.6, 0.7, 0.8])
    assert results.test_dice_batches == [0.75, 0.25, 0.5]
    assert results.own_test_dice_mean == pytest.approx(0.5)
    assert results.missing == []
    assert results.files["val_losses.xlsx"] == tmp_path / "attempt" / "outputs" / "val_losses.xlsx"
    assert "train_losses.xlsx: epochs across columns" in results.problems
    assert any(p.startswith("val_losses.xlsx: epochs down rows") for p in results.problems)


def test_missing_files_are_listed_not_raised(tmp_path: Path) -> None:
    pd.DataFrame([[1, 2], [0.5, 0.4]]).to_excel(tmp_path / "train_losses.xlsx", index=False, header=False)
    results = read_results(tmp_path)
    assert results.train_loss == [0.5, 0.4]
    assert results.val_loss == [] and results.val_dice == [] and results.own_test_dice_mean is None
    assert results.missing == ["val_losses.xlsx", "validation_dice_scores.xlsx", "test_dice_scores.xlsx"]
    assert "val_losses.xlsx: not written" in results.problems


def test_test_dice_written_as_a_column(tmp_path: Path) -> None:
    pd.DataFrame({"Dice": [0.5, 1.0]}).to_excel(tmp_path / "test_dice_scores.xlsx", index=False)
    assert read_results(tmp_path).test_dice_batches == [0.5, 1.0]


def test_file_names_with_llm_quirks_are_found(tmp_path: Path) -> None:
    (tmp_path / "out" / "plots").mkdir(parents=True)
    quirky = {
        "Train_Losses.XLSX": "train_losses.xlsx",
        "val_losses": "val_losses.xlsx",  # openpyxl saves whatever name it is given
        "validation_dice_scores .xlsx": "validation_dice_scores.xlsx",
        "out\\test_dice_scores.xlsx": "test_dice_scores.xlsx",  # a Windows path used on Linux
    }
    for name in quirky:
        pd.DataFrame([[1], [0.5]]).to_excel(tmp_path / "out" / "plots" / name, index=False, header=False)
    (tmp_path / "out" / "train_losses.png").write_bytes(b"not a workbook")
    (tmp_path / "out" / "~$val_losses.xlsx").write_bytes(b"excel lock file")
    found = find_result_files(tmp_path)
    assert {k: v.name for k, v in found.items()} == {v: k for k, v in quirky.items()}
    results = read_results(tmp_path)
    assert results.missing == [] and results.val_loss == [0.5]
    assert "val_losses.xlsx: found as 'val_losses'" in results.problems


def test_exact_name_wins_over_alias_and_newer_copy_over_older(tmp_path: Path) -> None:
    for folder, value in (("a", 0.1), ("b", 0.2)):
        (tmp_path / folder).mkdir()
        pd.DataFrame([[1], [value]]).to_excel(tmp_path / folder / "val_losses.xlsx", index=False, header=False)
    os.utime(tmp_path / "a" / "val_losses.xlsx", (1e9, 1e9))  # "a" holds the stale copy
    pd.DataFrame([[1], [0.3]]).to_excel(tmp_path / "val_loss.xlsx", index=False, header=False)
    assert find_result_files(tmp_path)["val_losses.xlsx"] == tmp_path / "b" / "val_losses.xlsx"


# --- broken files ----------------------------------------------------------------------------------


def test_corrupt_file_raises_results_error_naming_it(tmp_path: Path) -> None:
    pd.DataFrame([[1], [0.5]]).to_excel(tmp_path / "train_losses.xlsx", index=False, header=False)
    rng = random.Random(7)
    (tmp_path / "val_losses.xlsx").write_bytes(b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(2048)))
    with pytest.raises(ResultsError, match=r"^val_losses.xlsx: not a readable Excel workbook"):
        read_results(tmp_path)


def test_empty_and_numberless_files_raise(tmp_path: Path) -> None:
    (tmp_path / "test_dice_scores.xlsx").write_bytes(b"")
    with pytest.raises(ResultsError, match=r"test_dice_scores.xlsx: the file is empty"):
        read_dice_table(tmp_path / "test_dice_scores.xlsx")
    openpyxl.Workbook().save(tmp_path / "train_losses.xlsx")
    with pytest.raises(ResultsError, match="holds no numbers"):
        read_loss_curve(tmp_path / "train_losses.xlsx")
    wb = openpyxl.Workbook()
    wb.active.append(["Epoch", 1, 2, 3])  # the loss row was never appended
    wb.save(tmp_path / "val_losses.xlsx")
    with pytest.raises(ResultsError, match="epoch numbers but no loss values"):
        read_loss_curve(tmp_path / "val_losses.xlsx")


def test_csv_text_saved_under_an_excel_name_is_still_read(tmp_path: Path) -> None:
    pd.DataFrame([[1, 2], [0.5, 0.4]]).to_csv(tmp_path / "train_losses.xlsx", index=False, header=False)
    results = read_results(tmp_path)
    assert results.train_loss == [0.5, 0.4]
    assert any("CSV text with an Excel name" in p for p in results.problems)


# --- stray cells and the line read (issue 23 item 3) -------------------------------------------------


def test_loss_row_is_chosen_by_content_not_the_epoch_row(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.append([1, 2, 3, 1])  # the epoch row with a stray value right next to it: no longer 1, 2, 3, ...
    wb.active.append([0.9, 0.6, 0.4])
    wb.save(tmp_path / "train_losses.xlsx")
    results = read_results(tmp_path)
    assert results.train_loss == [0.9, 0.6, 0.4]
    assert results.layouts == {"train_losses.xlsx": "row 2 of sheet 'Sheet'"}


@pytest.mark.parametrize("stray", ["XFD1", "F1", "A40", "XFD1048576"])
def test_stray_cell_apart_from_the_table_is_ignored(tmp_path: Path, stray: str) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Epoch", "Loss"])
    for epoch, loss in ((1, 0.5), (2, 0.4), (3, 0.3)):
        ws.append([epoch, loss])
    ws[stray] = 7
    wb.save(tmp_path / "val_losses.xlsx")
    results = read_results(tmp_path)
    assert results.val_loss == [0.5, 0.4, 0.3]
    assert results.layouts["val_losses.xlsx"] == "column B of sheet 'Sheet'"


def test_layouts_name_where_each_file_was_read(tmp_path: Path) -> None:
    write_full_run(tmp_path / "outputs")
    assert read_results(tmp_path).layouts == {
        "train_losses.xlsx": "row 2 of sheet 'Sheet1'",
        "val_losses.xlsx": "column C of sheet 'Sheet1'",  # A: pandas index, B: epochs
        "validation_dice_scores.xlsx": "rows 2-4 (epochs) x columns B-C (batches) of sheet 'Sheet1'",
        "test_dice_scores.xlsx": "row 2 (epochs) x columns A-C (batches) of sheet 'Sheet1'",
    }
    transposed = tmp_path / "other"
    transposed.mkdir()
    dice_epochs_as_columns(transposed / "validation_dice_scores.xlsx", EPOCH_DICE)
    column_of_values(transposed / "train_losses.xlsx", [1, 2], [0.5, 0.25])
    assert read_results(transposed).layouts == {
        "train_losses.xlsx": "column A of sheet 'Sheet1'",
        "validation_dice_scores.xlsx": "columns A-C (epochs) x rows 2-4 (batches) of sheet 'Sheet1'",
    }
