"""MLproject entry point `sweep`: `llmseg sweep STUDY`; every pipeline is a root of its own in the study's experiment.

MLproject passes numbers as floats and has no flags: `--workers 2.0` becomes 2 (-1: the default),
`--dry-run true|false` a flag, an empty `--ray-address` nothing.
"""

import sys

from llmseg_mlflow.cli import main


def _argv(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        name, value = args[i], args[i + 1] if i + 1 < len(args) else None
        if name == "--workers":
            out += [] if float(value) < 0 else [name, str(int(float(value)))]
        elif name == "--dry-run":
            out += [name] if value.strip().lower() in ("true", "1", "yes") else []
        elif name == "--ray-address":
            out += [name, value] if value.strip() else []
        else:
            out.append(name)
            i += 1
            continue
        i += 2
    return out


if __name__ == "__main__":
    main(["sweep", *_argv(sys.argv[1:])])
