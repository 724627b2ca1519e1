"""MLproject entry point `demo`: the CLI's `llmseg demo`."""

import sys

from llmseg_mlflow.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
