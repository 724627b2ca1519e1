"""MLproject entry point `analyze`: `llmseg analyze`, logging into the run `mlflow run` started (kind=analysis)."""

import sys

from _args import normalise

from llmseg_mlflow.cli import main

if __name__ == "__main__":
    main(["analyze", *normalise(sys.argv[1:])])
