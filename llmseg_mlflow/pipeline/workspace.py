"""A pipeline's folders: the code history (a git repository, one commit per reply) and attempt folders."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import git


def attempt_path(root: Path, number: int, phase: str) -> Path:
    """Where attempt `number` of `phase` of the workspace at `root` runs: attempts/NN-phase."""
    return root / "attempts" / f"{number:02d}-{phase}"


def attempt_logs(folder: Path) -> Path:
    """The captured stdout/stderr of an attempt folder: a sibling `NN-phase.logs/`."""
    return folder.with_name(f"{folder.name}.logs")


@dataclass
class Workspace:
    """`root/code` holds the LLM's files under git; each execution gets `root/attempts/NN-phase/`."""

    root: Path

    def __post_init__(self) -> None:
        self.code_dir.mkdir(parents=True, exist_ok=True)
        self.attempts_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.repo = git.Repo(self.code_dir)
        except git.InvalidGitRepositoryError:
            self.repo = git.Repo.init(self.code_dir, initial_branch="main")
        with self.repo.config_writer() as cfg:  # local identity: never depend on the user's git config
            cfg.set_value("user", "name", "llmseg")
            cfg.set_value("user", "email", "llmseg@localhost")

    @property
    def code_dir(self) -> Path:
        """The git work tree of the generated files."""
        return self.root / "code"

    @property
    def attempts_dir(self) -> Path:
        """Parent of every attempt folder."""
        return self.root / "attempts"

    def commit(self, files: dict[str, str], message: str) -> tuple[str, str]:
        """Write the files (removing ones no longer present), commit, return (sha, diff vs previous)."""
        for old in self.code_dir.glob("*.py"):
            if old.name not in files:
                old.unlink()
        for name, text in files.items():
            path = self.code_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.repo.git.add(A=True)
        had_head = self.repo.head.is_valid()
        commit = self.repo.index.commit(message)
        diff = self.repo.git.diff(f"{commit.hexsha}~1", commit.hexsha) if had_head else ""
        return commit.hexsha, diff

    def bundle(self, dest: Path) -> Path:
        """A single-file copy of the history (`git clone code.bundle` restores it)."""
        self.repo.git.bundle("create", str(dest), "--all")
        return dest

    def attempt_dir(self, number: int, phase: str) -> Path:
        """Where attempt `number` of `phase` runs: attempts/NN-phase."""
        return attempt_path(self.root, number, phase)

    def new_attempt(self, number: int, phase: str, files: dict[str, str]) -> Path:
        """A fresh folder holding a copy of the code to run (the only place the code may write)."""
        folder = self.attempt_dir(number, phase)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for name, text in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return folder
