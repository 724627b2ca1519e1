"""Loaded by every Python in the sandbox: the harness's settings applied from outside the generated code.

LLMSEG_MAX_BATCHES caps DataLoader batches per epoch; LLMSEG_SEED seeds Python, NumPy and torch before
the pipeline runs. Both act right after the module they touch is first imported (the code never sees
this file), so Python starts without importing torch; a seed the code sets itself comes later and wins.
"""

import os
import random
import sys

_CAP = int(os.environ.get("LLMSEG_MAX_BATCHES", "0") or 0)
_SEED = os.environ.get("LLMSEG_SEED", "")


def _patch_dataloader(module):
    import itertools

    loader = module.DataLoader
    if getattr(loader, "_llmseg_capped", False):
        return
    orig_iter, orig_len = loader.__iter__, loader.__len__

    def __iter__(self):
        return itertools.islice(orig_iter(self), _CAP)

    def __len__(self):
        return min(orig_len(self), _CAP)

    loader.__iter__, loader.__len__, loader._llmseg_capped = __iter__, __len__, True


def _seed_numpy(module):
    module.random.seed(int(_SEED))


def _seed_torch(module):
    module.manual_seed(int(_SEED))  # every device, CUDA included


class _AfterImport:
    """A meta-path finder that calls a hook right after each target module loads."""

    def __init__(self, hooks):
        self.hooks = dict(hooks)

    def find_spec(self, name, path=None, target=None):
        hook = self.hooks.pop(name, None)
        if hook is None:
            return None
        if not self.hooks:
            sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            hook(module)

        spec.loader.exec_module = patched
        return spec


_hooks = {}
if _CAP > 0:
    _hooks["torch.utils.data.dataloader"] = _patch_dataloader
if _SEED:
    random.seed(int(_SEED))
    _hooks["numpy"] = _seed_numpy
    _hooks["torch"] = _seed_torch
if _hooks:
    sys.meta_path.insert(0, _AfterImport(_hooks))
