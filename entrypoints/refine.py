"""MLproject entry point `refine`: `llmseg refine`, the pipeline's results fed back in rounds under its root."""

import sys

from _args import normalise

from llmseg_mlflow.cli import main

if __name__ == "__main__":
    main(["refine", *normalise(sys.argv[1:])])
