"""Loaded by every Python in the sandbox: the harness's settings applied from outside the generated code.

LLMSEG_MAX_BATCHES caps DataLoader batches per epoch; when the cap stops an iteration that had more to
give, the file LLMSEG_CAP_MARK names is created, so the harness knows the run did not see all its data
(code such as `random.sample(list(test_loader), 5)` fails under the cap alone). LLMSEG_SEED seeds Python,
NumPy and torch before the pipeline runs. Both act right after the module they touch is first imported
(the code never sees this file), so Python starts without importing torch; a seed the code sets itself
comes later and wins.
"""

import os
import random
import sys

_CAP = int(os.environ.get("LLMSEG_MAX_BATCHES", "0") or 0)
_SEED = os.environ.get("LLMSEG_SEED", "")
_MARK = os.environ.get("LLMSEG_CAP_MARK", "")


def _mark_cut():
    if _MARK and not os.path.exists(_MARK):
        try:
            open(_MARK, "w").close()
        except OSError:
            pass


def _patch_dataloader(module):
    loader = module.DataLoader
    if getattr(loader, "_llmseg_capped", False):
        return
    orig_iter, orig_len = loader.__iter__, loader.__len__

    def __iter__(self):
        batches = orig_iter(self)
        try:
            total = orig_len(self)
        except TypeError:  # an iterable dataset without a length: only the next batch tells
            total = None
        for _ in range(_CAP):
            try:
                yield next(batches)
            except StopIteration:
                return
        # The consumer asked for more than the cap let through: was there more?
        if total is None:
            try:
                next(batches)
            except StopIteration:
                return
            _mark_cut()
        elif total > _CAP:
            _mark_cut()

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
