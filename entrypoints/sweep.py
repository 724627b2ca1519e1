"""MLproject entry point `sweep`: `llmseg sweep STUDY`; every pipeline is a root of its own in the study's experiment."""

import sys

from _args import normalise

from llmseg_mlflow.cli import main

if __name__ == "__main__":
    main(["sweep", sys.argv[1], *normalise(sys.argv[2:])])
