"""MLproject entry point `train`: `llmseg train`; the new pipeline root is nested under the launch run.

A re-run that does not train is a result (the root's `status` tag tells), so it exits 0 as `generate` does.
"""

import sys

from _args import normalise

from llmseg_mlflow.cli import EXIT_NO_PIPELINE, main

if __name__ == "__main__":
    try:
        main(["train", *normalise(sys.argv[1:])])
    except SystemExit as exc:
        sys.exit(0 if exc.code == EXIT_NO_PIPELINE else exc.code)
