"""MLproject entry point `analyze`: `llmseg analyze`, logging into the run `mlflow run` started (kind=analysis).

MLproject has no optional or boolean parameters: empty values are dropped and `--bonferroni true|false`
becomes the flag.
"""

import sys

from llmseg_mlflow.cli import main


def normalise(argv: list[str]) -> list[str]:
    """Drop options given as empty strings; turn `--bonferroni true` into the flag."""
    out, i = [], 0
    while i < len(argv):
        opt, value = argv[i], argv[i + 1] if i + 1 < len(argv) else ""
        i += 2
        if opt == "--bonferroni":
            if value.strip().lower() in ("true", "1", "yes"):
                out.append(opt)
        elif value.strip():
            out += [opt, value]
    return out


if __name__ == "__main__":
    main(["analyze", *normalise(sys.argv[1:])])
