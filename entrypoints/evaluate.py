"""MLproject entry point `evaluate`: `llmseg evaluate` inside the run `mlflow run` started (tagged kind=launch)."""

import sys

from _args import normalise

from llmseg_mlflow.cli import main

if __name__ == "__main__":
    main(["evaluate", *normalise(sys.argv[1:])])
