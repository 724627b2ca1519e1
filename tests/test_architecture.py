"""The layers of docs/architecture.md hold: no upward import (import-linter's contract in .importlinter) and
no import cycle between modules (imports for type checking only aside)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_imports_from_a_layer_above_it():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in out.stdout


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("llmseg_mlflow", exclude_type_checking_imports=True)
    cycles = set()
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith(module + ".") or module.startswith(imported + "."):
                continue  # a package's __init__ and its own modules
            try:
                back = graph.find_shortest_chain(importer=imported, imported=module, as_packages=False)
            except ValueError:
                continue
            if back:
                cycles.add(" -> ".join((module, *back)))
    assert not cycles, sorted(cycles)
