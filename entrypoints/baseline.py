"""MLproject entry point `baseline`: the CLI's `llmseg baseline`, inside the run `mlflow run` started.

An nnU-Net that crashed (exit 3 on the CLI) is a result, not a launcher failure: here it exits 0 so
`mlflow run` keeps the run FINISHED; the pipeline root's `status` tag tells.
"""

import sys

from _args import normalise

from llmseg_mlflow.cli import EXIT_NO_PIPELINE, main

if __name__ == "__main__":
    try:
        main(["baseline", *normalise(sys.argv[1:])])
    except SystemExit as exc:
        sys.exit(0 if exc.code == EXIT_NO_PIPELINE else exc.code)
