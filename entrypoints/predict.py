"""MLproject entry point `predict`: `llmseg predict` inside the run `mlflow run` started: masks for a folder of images, in the sandbox."""

import sys

from _args import normalise

from llmseg_mlflow.cli import main

if __name__ == "__main__":
    main(["predict", *normalise(sys.argv[1:])])
