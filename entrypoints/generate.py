"""MLproject entry point `generate`: the CLI's `llmseg generate`, inside the run `mlflow run` started.

A pipeline that ends without working code (exit 3 on the CLI) is a result, not a crash:
here it exits 0 so `mlflow run` keeps the run FINISHED; the root's `status` tag tells.
"""

import sys

from _args import normalise

from llmseg_mlflow.cli import EXIT_NO_PIPELINE, main

if __name__ == "__main__":
    try:
        main(["generate", *normalise(sys.argv[1:])])
    except SystemExit as exc:
        sys.exit(0 if exc.code == EXIT_NO_PIPELINE else exc.code)
