"""Seeded choices of a preparation: the subset of the source and the held-out split (by patient or by slice)."""

from __future__ import annotations

import hashlib

import numpy as np


def dataset_rng(key: str, seed: int, stream: int = 0) -> np.random.Generator:
    """A generator fixed by (seed, dataset key[, stream]): datasets with the same seed still split differently."""
    key_number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return np.random.default_rng([seed, key_number] + ([stream] if stream else []))


def choose_subset(rng: np.random.Generator, n: int, size: int | None) -> list[int] | None:
    """Sorted indices of a seeded subset of `size` out of n, or None when all are kept."""
    if size is None or n <= size:
        return None
    return np.sort(rng.choice(n, size=size, replace=False)).tolist()


def heldout_count(n: int, fraction: float) -> int:
    """How many of n samples to hold out: the fraction, rounded, at least 1, leaving at least 1."""
    return min(n - 1, max(1, round(fraction * n)))


def split_by_group(groups: list[str], fraction: float, rng: np.random.Generator) -> set[int]:
    """Indices of the held-out samples; whole groups (patients) go to one side only.

    Groups are taken in a seeded order and each is held out when that brings the held-out count
    closer to the target, so the held-out share is as near the fraction as whole patients allow.
    When every sample is its own group this is a plain seeded random split.
    """
    n = len(groups)
    order: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        order.setdefault(group, []).append(index)
    members = list(order.values())
    if len(members) < 2:
        raise ValueError(
            f"all {n} samples come from one patient ({groups[0]!r}), so none can be held out without "
            "sharing that patient; add patients, or split by slice (--split-by slice)"
        )
    target = heldout_count(n, fraction)
    held: list[int] = []
    count = 0
    for g in rng.permutation(len(members)).tolist():
        if count == target:
            break
        if abs(count + len(members[g]) - target) < abs(count - target):
            held.append(g)
            count += len(members[g])
    if not held:  # every patient has more slices than twice the target: hold out the smallest
        held.append(min(range(len(members)), key=lambda g: len(members[g])))
    if len(held) == len(members):
        held.pop()
    return {i for g in held for i in members[g]}
