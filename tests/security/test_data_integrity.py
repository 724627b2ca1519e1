"""Prepared data are the platform's own copies, checked before every evaluation: never hard links into the
user's source folder (older preparations that are get repaired), and a changed held-out file stops the
evaluation with a message that names it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmseg_mlflow.catalog import integrity
from llmseg_mlflow.catalog.datasets import ENV_VAR, DatasetSpec, load_datasets
from llmseg_mlflow.catalog.prepare import PreparedDataModifiedError, load_prepared, prepare_dataset, verify_prepared
from llmseg_mlflow.catalog.synthetic import generate_synthetic
from llmseg_mlflow.evaluation.evaluator import EvalSettings, evaluate_attempt


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ENV_VAR, raising=False)
        # images/ + masks/, PNG: files kept as they are
        return load_datasets()["bolus"].model_copy(update={"subset_size": None})


def _prepared(spec: DatasetSpec, tmp_path: Path):
    source = generate_synthetic(spec, tmp_path / "src", n=20, size=32)
    return source, prepare_dataset(spec, tmp_path / "out", source=source)


def _prepared_files(prepared) -> list[Path]:
    return sorted(p for split in (prepared.pool, prepared.heldout) for p in split.rglob("*") if p.is_file())


def _source_of(prepared, source: Path, path: Path) -> Path:
    """bolus keeps names and folders: <split>/images/N.png came from <source>/images/N.png."""
    return source / path.relative_to(prepared.root).relative_to(path.relative_to(prepared.root).parts[0])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepared_files_are_copies_not_links_into_the_source(spec, tmp_path):
    source, prepared = _prepared(spec, tmp_path)
    files = _prepared_files(prepared)
    assert len(files) == 40
    source_inodes = {p.stat().st_ino for p in source.rglob("*") if p.is_file()}
    for path in files:
        assert path.stat().st_nlink == 1 and path.stat().st_ino not in source_inodes
        assert path.read_bytes() == _source_of(prepared, source, path).read_bytes()
    # Writing to one side leaves the other as it was.
    image = files[0]
    original = _source_of(prepared, source, image)
    before = original.read_bytes()
    image.write_bytes(b"tampered")
    assert original.read_bytes() == before


def test_a_changed_heldout_file_stops_the_next_evaluation(spec, tmp_path):
    source, prepared = _prepared(spec, tmp_path)
    prepared.verify_heldout()  # as prepared: fine
    _, mask = prepared.heldout_pairs()[0]
    user_copy = _source_of(prepared, source, mask).read_bytes()
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(mask)  # someone "fixes" a held-out mask
    rel = mask.relative_to(prepared.root).as_posix()
    dest = tmp_path / "eval"
    with pytest.raises(
        PreparedDataModifiedError, match=rf"heldout split .*\(changed: {rel}.*llmseg datasets prepare bolus --force"
    ):
        evaluate_attempt(tmp_path / "any-attempt", prepared, dest, EvalSettings())  # checked before anything runs
    assert not dest.exists()
    assert _source_of(prepared, source, mask).read_bytes() == user_copy  # the user's own data untouched
    with pytest.raises(PreparedDataModifiedError, match=rel):  # and it keeps failing, cache or not
        load_prepared(spec, tmp_path / "out").verify_heldout()


def test_verification_hashes_only_what_changed(spec, tmp_path, monkeypatch):
    _, prepared = _prepared(spec, tmp_path)
    monkeypatch.setattr(integrity, "_SETTLED_NS", 0)  # files written in the last 2 s are always hashed again
    hashed: list[Path] = []
    real_sha = integrity._sha256
    monkeypatch.setattr(integrity, "_sha256", lambda path: hashed.append(path) or real_sha(path))
    prepared.verify_heldout()
    assert len(hashed) == 2 * prepared.n_heldout  # the first call hashes every held-out image and mask
    hashed.clear()
    load_prepared(spec, tmp_path / "out").verify_heldout()  # a later evaluation, another process
    assert hashed == []
    image, _ = prepared.heldout_pairs()[0]
    os.utime(image)  # touched, same bytes: hashed again, and still fine
    prepared.verify_heldout()
    assert hashed == [image]
    assert json.loads((prepared.root / integrity.VERIFIED).read_text())["digest"] == prepared.digest


def test_the_blind_heldout_has_every_image_and_only_blank_masks(spec, tmp_path):
    _, prepared = _prepared(spec, tmp_path)
    blind = prepared.blind_heldout()
    assert blind == prepared.root / "heldout_blind"
    assert sorted(p.relative_to(blind) for p in blind.rglob("*") if p.is_file()) == sorted(
        p.relative_to(prepared.heldout) for p in prepared.heldout.rglob("*") if p.is_file()
    )
    for image, mask in prepared.heldout_pairs():
        twin = blind / mask.relative_to(prepared.heldout)
        with Image.open(twin) as blank, Image.open(mask) as real:
            assert (blank.format, blank.size, blank.mode) == (real.format, real.size, real.mode)
            assert not np.asarray(blank).any()
        assert (blind / image.relative_to(prepared.heldout)).read_bytes() == image.read_bytes()
    inode = next(blind.rglob("*.png")).stat().st_ino
    assert prepared.blind_heldout() == blind and next(blind.rglob("*.png")).stat().st_ino == inode  # built once
    planted = blind / "masks" / "extra.png"
    planted.write_bytes(b"x")
    prepared.blind_heldout()
    assert not planted.exists()  # touched: rebuilt
    verify_prepared(prepared)  # heldout_blind/ is not part of the manifest's folders


def _as_old_preparation(prepared, source: Path) -> list[Path]:
    """What older versions made: every prepared file a hard link to the user's source file."""
    files = _prepared_files(prepared)
    for path in files:
        path.unlink()
        os.link(_source_of(prepared, source, path), path)
    assert all(p.stat().st_nlink == 2 for p in files)
    return files


def test_an_old_hard_linked_preparation_is_repaired_on_load(spec, tmp_path, capsys):
    source, prepared = _prepared(spec, tmp_path)
    files = _as_old_preparation(prepared, source)
    capsys.readouterr()
    again = load_prepared(spec, tmp_path / "out")
    assert again == prepared
    err = capsys.readouterr().err
    assert "40 file(s) of the prepared dataset 'bolus'" in err and "replacing them with copies" in err
    for path in files:
        original = _source_of(prepared, source, path)
        assert path.stat().st_nlink == 1 and original.stat().st_nlink == 1
        assert path.stat().st_ino != original.stat().st_ino and path.read_bytes() == original.read_bytes()
    verify_prepared(again)
    again.verify_heldout()
    load_prepared(spec, tmp_path / "out")
    assert capsys.readouterr().err == ""  # repaired once


def test_an_old_preparation_whose_source_was_edited_fails_on_load(spec, tmp_path):
    source, prepared = _prepared(spec, tmp_path)
    files = _as_old_preparation(prepared, source)
    edited = next(p for p in files if "heldout" in p.parts and "masks" in p.parts)
    _source_of(prepared, source, edited).write_bytes(b"edited by the user")  # the link carried it over
    rel = edited.relative_to(prepared.root).as_posix()
    with pytest.raises(PreparedDataModifiedError, match=rf"no longer match the manifest .*{rel}.*--force"):
        load_prepared(spec, tmp_path / "out")
