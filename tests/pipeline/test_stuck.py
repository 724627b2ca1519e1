"""Repeated error loops: what counts as the same error, and when the watch steps in or stops."""

from __future__ import annotations

from llmseg_mlflow.pipeline.errors import ExecError
from llmseg_mlflow.pipeline.stuck import DEFAULT_HINT, LoopWatch, signature


def _error(line: int, shape: int, func: str = "forward", file: str = "model.py") -> ExecError:
    tb = (
        "Traceback (most recent call last):\n"
        '  File "/workspace/main.py", line 40, in <module>\n    train_model(model)\n'
        f'  File "/workspace/{file}", line {line}, in {func}\n    x = torch.cat([u, d1], dim=1)\n'
        f"RuntimeError: Sizes of tensors must match except in dimension 1. Expected size {shape} but got size {shape // 2}"
    )
    return ExecError("RuntimeError", tb.splitlines()[-1].split(": ", 1)[1], tb)


def test_numbers_and_line_numbers_do_not_make_a_new_error():
    assert signature(_error(30, 64)) == signature(_error(35, 128))
    assert signature(_error(30, 64))[1] == "model.py:forward:x = torch.cat([u, d1], dim=1)"


def test_another_place_in_the_code_or_another_type_is_another_error():
    assert signature(_error(30, 64)) != signature(_error(30, 64, func="decode"))
    other = ExecError("ValueError", "Sizes of tensors must match", _error(30, 64).feedback)
    assert signature(other) != signature(_error(30, 64))


def test_the_watch_stops_on_the_nth_repeat_and_a_new_error_resets_it():
    watch = LoopWatch(after=3)
    assert [watch.see(_error(30, 64)), watch.see(_error(31, 32))] == ["continue", "continue"]
    assert watch.see(_error(30, 64, func="decode")) == "continue"  # a new error: the count starts again
    assert [watch.see(_error(30, 64, func="decode")) for _ in range(2)] == ["continue", "stop"]


def test_with_a_hint_the_watch_steps_in_once_then_stops():
    watch = LoopWatch(after=2, hint="default")
    assert [watch.see(_error(30, 64)) for _ in range(2)] == ["continue", "intervene"]
    assert watch.hint_text() == DEFAULT_HINT.replace("{n}", "2")
    assert [watch.see(_error(30, 64)) for _ in range(2)] == ["continue", "stop"]
    assert LoopWatch(after=0).see(_error(1, 2)) == "continue"
    assert LoopWatch(after=1, hint="Check the shapes.").hint_text() == "Check the shapes."
