"""MLproject entry point `promote`: `llmseg promote`: the dataset's best pipeline as llmseg-<dataset>@champion."""

import sys

from _args import normalise

from llmseg_mlflow.cli import main

if __name__ == "__main__":
    main(["promote", *normalise(sys.argv[1:])])
