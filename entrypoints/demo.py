"""MLproject entry point `demo`: the CLI's `llmseg demo`."""

import sys

from _args import normalise

from llmseg_mlflow.cli import main

if __name__ == "__main__":
    main(["demo", *normalise(sys.argv[1:])])
