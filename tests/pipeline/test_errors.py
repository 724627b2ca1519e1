"""Error classification: the type that goes in the `error_type` tag and the text fed back verbatim."""

from __future__ import annotations

from pathlib import Path

from llmseg_mlflow.pipeline.errors import classify, exception_line, last_traceback, recorded_error, same_error
from llmseg_mlflow.pipeline.sandbox import ExecResult

TQDM_THEN_TRACEBACK = (
    "Epoch 1/5 [train]:  10%|#         | 1/10 [00:01<00:09]\r"
    "Epoch 1/5 [train]:  20%|##        | 2/10 [00:02<00:08]\n"
    "Traceback (most recent call last):\n"
    '  File "/w/main.py", line 40, in <module>\n'
    "    train(model, loader)\n"
    '  File "/w/train.py", line 12, in train\n'
    "    loss = criterion(out, masks)\n"
    "           ^^^^^^^^^^^^^^^^^^^^^\n"
    "RuntimeError: Found dtype Byte but expected Float\n"
)


def _result(tmp_path: Path, stderr: str, returncode: int | None = 1, **kw) -> ExecResult:
    out, err = tmp_path / "o.log", tmp_path / "e.log"
    out.write_text("")
    err.write_text(stderr)
    return ExecResult(returncode=returncode, duration_s=1.0, stdout_path=out, stderr_path=err, **kw)


def test_traceback_is_fed_back_verbatim_without_progress_bars(tmp_path):
    err = classify(_result(tmp_path, TQDM_THEN_TRACEBACK), 60, 16)
    assert err.error_type == "RuntimeError"
    assert err.message == "Found dtype Byte but expected Float"
    assert err.feedback.startswith("Traceback (most recent call last):")
    assert err.feedback.endswith("RuntimeError: Found dtype Byte but expected Float")
    assert "Epoch 1/5" not in err.feedback


def test_qualified_and_bare_exception_names():
    assert (
        exception_line("Traceback (most recent call last):\n  x\ntorch.OutOfMemoryError: CUDA out of memory.")[0]
        == "torch.OutOfMemoryError"
    )
    assert exception_line("Traceback (most recent call last):\n  File 'a'\nKeyboardInterrupt") == (
        "KeyboardInterrupt",
        "",
    )
    assert (
        exception_line(
            "Traceback (most recent call last):\n  File 'a'\nModuleNotFoundError: No module named 'albumentations'"
        )[0]
        == "ModuleNotFoundError"
    )


def test_chained_exceptions_are_kept_together(tmp_path):
    text = (
        "Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'mask'\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        'Traceback (most recent call last):\n  File "a.py", line 3\nValueError: no mask\n'
    )
    tb = last_traceback(text)
    assert tb.startswith("Traceback") and "KeyError: 'mask'" in tb and tb.endswith("ValueError: no mask")
    assert classify(_result(tmp_path, text), 60, 16).error_type == "ValueError"


def test_out_of_memory_variants(tmp_path):
    cuda = "Traceback (most recent call last):\n  x\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    cpu = (
        "Traceback (most recent call last):\n  x\nRuntimeError: [enforce fail at alloc_cpu.cpp:117] "
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes.\n"
    )
    assert classify(_result(tmp_path, cuda), 60, 16).error_type == "OutOfMemory"
    assert classify(_result(tmp_path, cpu), 60, 16).error_type == "OutOfMemory"
    assert classify(_result(tmp_path, "", returncode=-9, out_of_memory=True), 60, 16).error_type == "OutOfMemory"


def test_timeout_and_plain_exit(tmp_path):
    timeout = classify(_result(tmp_path, "", returncode=-9, timed_out=True), 30, 16)
    assert timeout.error_type == "Timeout" and "30 seconds" in timeout.feedback
    plain = classify(
        _result(
            tmp_path,
            "usage: main.py [-h] --data_dir DATA_DIR\nmain.py: error: the following arguments are required: --data_dir\n",
            returncode=2,
        ),
        60,
        16,
    )
    assert plain.error_type == "SystemExit" and "--data_dir" in plain.feedback
    segv = classify(_result(tmp_path, "", returncode=-11), 60, 16)
    assert segv.error_type == "Killed" and "SIGSEGV" in segv.feedback


def test_the_error_a_person_pasted_is_read_from_a_traceback_or_a_last_line():
    pasted = 'I got this:\nTraceback (most recent call last):\n  File "x.py", line 1\ntorch.cuda.OutOfMemoryError: CUDA out\n'
    assert recorded_error(pasted) == ("OutOfMemoryError", "CUDA out")
    assert recorded_error("still failing:\nKeyError: 'image'\nwhat now?") == ("KeyError", "'image'")
    assert recorded_error("Dice is only 0.4, can you improve the model?") is None
    # A chat page that lost the traceback's line breaks: the error follows the last frame's code line.
    flat = (
        'Testing: 100%| 32/32 Traceback (most recent call last): File "D:\\seg\\main.py", line 32, in <module> '
        "optimizer = optim.Adam(model.parameters(), lr=1e-4) NameError: name 'optim' is not defined"
    )
    assert recorded_error(flat) == ("NameError", "name 'optim' is not defined")
    assert recorded_error('File "t.py", line 8, in f x.numpy() RuntimeError: Can\'t call numpy()') == (
        "RuntimeError",
        "Can't call numpy()",
    )
    assert same_error(("KeyError", "'image'  "), ("KeyError", "'image'"))
    assert not same_error(("KeyError", "'image'"), ("KeyError", "'mask'"))
    # Python 3.10+ adds a hint naming what is near the error; a person's copy may lack it
    assert same_error(
        ("NameError", "name 'DataLoader' is not defined. Did you mean: 'data_folder'?"),
        ("NameError", "name 'DataLoader' is not defined."),
    )
    assert not same_error(
        ("NameError", "name 'DataLoader' is not defined"), ("NameError", "name 'Adam' is not defined")
    )
    # shapes follow the data: the person's batch of 5 and the harness's 16 are the same error
    assert same_error(
        ("TypeError", "Invalid shape (5, 128, 128) for image data"),
        ("TypeError", "Invalid shape (16, 128, 128) for image data"),
    )
    assert not same_error(
        ("TypeError", "Invalid shape (5, 128) for image data"), ("ValueError", "Invalid shape (5, 128) for image data")
    )
