"""MLproject entry point `baseline`: the CLI's `llmseg baseline`, inside the run `mlflow run` started.

An nnU-Net that crashed (exit 3 on the CLI) is a result, not a launcher failure: here it exits 0 so
`mlflow run` keeps the run FINISHED; the pipeline root's `status` tag tells.
"""
import sys

from _int_args import normalise

from llmseg_mlflow.cli import EXIT_NO_PIPELINE, main

BASELINE_INT_OPTIONS = {"--iterations"}  # --epochs is normalised by _int_args


def _ints(argv: list[str]) -> list[str]:
    """MLproject passes "250.0"; the CLI wants "250"."""
    out = normalise(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in BASELINE_INT_OPTIONS:
            out[i + 1] = str(int(float(out[i + 1])))
    return out


if __name__ == "__main__":
    try:
        main(["baseline", *_ints(sys.argv[1:])])
    except SystemExit as exc:
        sys.exit(0 if exc.code == EXIT_NO_PIPELINE else exc.code)
