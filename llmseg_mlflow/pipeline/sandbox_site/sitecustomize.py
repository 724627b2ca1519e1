"""Loaded by every Python in the sandbox: caps DataLoader batches per epoch when LLMSEG_MAX_BATCHES is set.

The cap is applied from outside the generated code (it never sees this file), after
torch.utils.data is first imported, so Python starts without importing torch.
"""

import os
import sys

_CAP = int(os.environ.get("LLMSEG_MAX_BATCHES", "0") or 0)


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


class _AfterImport:
    """A meta-path finder that patches torch.utils.data.dataloader right after it loads."""

    target = "torch.utils.data.dataloader"

    def find_spec(self, name, path=None, target=None):
        if name != self.target:
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            _patch_dataloader(module)

        spec.loader.exec_module = patched
        return spec


if _CAP > 0:
    sys.meta_path.insert(0, _AfterImport())
