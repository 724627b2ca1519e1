"""Preparation throughput: images per second from a PNG source and from NIfTI volumes, and peak memory.

Makes its own fake sources in a temporary folder (a few hundred 256x256 PNG pairs in images/ and
masks/, a few 256x256x40 NIfTI volumes with a label in half of the slices), prepares each with the
catalog's adapters and prints pairs (slices) per second. Then prepares the PNG source at N and 2N
pairs under tracemalloc and prints the peak Python-tracked memory of each: flat means it does not
grow with the number of images. Runs in well under a minute on 2 cores.

    .venv/bin/python benchmarks/prepare_throughput.py [--images 400] [--volumes 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.pop("LLMSEG_DATASETS_FILE", None)

from llmseg_mlflow.catalog.datasets import load_datasets  # noqa: E402
from llmseg_mlflow.catalog.prepare import prepare_dataset  # noqa: E402

SIZE = 256


def _picture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth picture with mild noise: compresses like a medical frame, not like white noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    field = 0.5 + 0.25 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(4 * yy + rng.uniform(0, 6))
    return np.clip((field + rng.normal(0, 0.03, (size, size))) * 255, 0, 255).astype(np.uint8)


def _mask(rng: np.random.Generator, size: int) -> np.ndarray:
    out = np.zeros((size, size), np.uint8)
    y, x = rng.integers(0, size // 2, size=2)
    out[y : y + size // 4, x : x + size // 3] = 255
    return out


def make_png_source(root: Path, n: int) -> Path:
    """n grayscale image/mask pairs in images/ and masks/."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(_picture(rng, SIZE)).save(root / "images" / f"{i}.png")
        Image.fromarray(_mask(rng, SIZE)).save(root / "masks" / f"{i}.png")
    return root


def make_nifti_source(root: Path, n: int, depth: int = 40) -> tuple[Path, int]:
    """n int16 volumes SIZE x SIZE x depth with labels 1/2 throughout and label 3 in half the slices."""
    import nibabel as nib

    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    affine = np.diag([0.7, 0.7, 4.0, 1.0])
    slices = 0
    for i in range(n):
        volume = np.stack([_picture(rng, SIZE).astype(np.int16) * 4 for _ in range(depth)], axis=-1)
        labels = np.zeros(volume.shape, np.uint8)
        labels[32:224, 32:224, 2:-2] = 1
        labels[64:128, 64:128, 5:-5] = 2
        start = int(rng.integers(0, depth // 2))
        labels[100:160, 90:170, start : start + depth // 2] = 3
        slices += depth // 2
        nib.save(nib.Nifti1Image(volume, affine), str(root / "images" / f"case_{i:03d}.nii.gz"))
        nib.save(nib.Nifti1Image(labels, affine), str(root / "labels" / f"case_{i:03d}.nii.gz"))
    return root, slices


def timed(spec, source: Path, out: Path) -> tuple[float, int]:
    """Seconds to prepare from scratch, and how many pairs were prepared."""
    start = time.perf_counter()
    prepared = prepare_dataset(spec, out, source=source, force=True)
    return time.perf_counter() - start, prepared.n_pool + prepared.n_heldout


def peak_mib(spec, source: Path, out: Path) -> float:
    """Peak Python-tracked memory (MiB) while preparing."""
    tracemalloc.start()
    prepare_dataset(spec, out, source=source, force=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    """Build the fake sources, time the preparations and print the rates and memory peaks."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400, help="PNG pairs in the image source")
    ap.add_argument("--volumes", type=int, default=4, help="NIfTI volume pairs")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    catalog = load_datasets()
    png_spec = catalog["bolus"].model_copy(update={"subset_size": None})
    nifti_spec = catalog["uterine-myoma"]
    with tempfile.TemporaryDirectory(prefix="llmseg-prepare-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        png = make_png_source(work / "png", args.images)
        half = make_png_source(work / "png-half", args.images // 2)
        nifti, n_slices = make_nifti_source(work / "nifti", args.volumes)
        print(
            f"fake sources made in {time.perf_counter() - t0:.1f} s: {args.images} PNG pairs {SIZE}x{SIZE}, "
            f"{args.volumes} volumes {SIZE}x{SIZE}x40 ({n_slices} slices with label 3); {os.cpu_count()} CPU(s)"
        )

        png_runs, nifti_runs = [], []
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            png_runs.append(timed(png_spec, png, work / "out"))
            nifti_runs.append(timed(nifti_spec, nifti, work / "out"))
        png_s = statistics.median(s for s, _ in png_runs)
        nifti_s = statistics.median(s for s, _ in nifti_runs)
        print(
            f"PNG   : {png_runs[0][1]} pairs in {png_s:.2f} s (median of {args.repeats}) -> {png_runs[0][1] / png_s:.0f} images/s"
        )
        print(
            f"NIfTI : {nifti_runs[0][1]} slices from {args.volumes} volumes in {nifti_s:.2f} s -> "
            f"{nifti_runs[0][1] / nifti_s:.0f} images/s ({args.volumes / nifti_s:.1f} volumes/s)"
        )

        small = peak_mib(png_spec, half, work / "mem")  # the timed runs above already imported everything
        large = peak_mib(png_spec, png, work / "mem")
        per_pair = (large - small) * 1024 / (args.images - args.images // 2)
        print(
            f"peak traced memory: {args.images // 2} pairs {small:.1f} MiB, {args.images} pairs {large:.1f} MiB "
            f"(+{per_pair:.1f} KiB per extra pair: the manifest's file list; a pair's pixels are "
            f"{2 * SIZE * SIZE / 1024:.0f} KiB and none are kept)"
        )


if __name__ == "__main__":
    main()
