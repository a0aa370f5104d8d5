"""The code of an earlier commit, checked out beside this one, to measure "before" and "after" in one run.

`previous_checkout(ref)` makes a detached git worktree of `ref` in a temporary folder, shares this
checkout's converted models (the same files), and removes the worktree afterwards. Its indexes are built
by its own code, so a change of the index format cannot make the comparison fail.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.core.config import REPO_ROOT


def _git(*args: str, cwd: Path = REPO_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def resolve(ref: str) -> str:
    """The full commit id of `ref`; a clear error when git does not know it."""
    try:
        return _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError as exc:
        raise ValueError(f"BENCH_PREVIOUS_REF={ref!r} is not a commit of this repository ({exc.stderr.strip()})")


@contextlib.contextmanager
def previous_checkout(ref: str) -> Iterator[Path]:
    """A worktree of `ref`, with this checkout's models, removed on exit."""
    commit = resolve(ref)
    parent = Path(tempfile.mkdtemp(prefix="bench-previous-"))
    root = parent / commit[:12]
    _git("worktree", "add", "--detach", str(root), commit)
    try:
        if (REPO_ROOT / "models").is_dir():
            (root / "models").symlink_to(REPO_ROOT / "models", target_is_directory=True)
        yield root
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(root)], cwd=REPO_ROOT, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO_ROOT, capture_output=True)
        with contextlib.suppress(OSError):
            parent.rmdir()


def build_index(root: Path, docs: Path, index: Path, env: dict) -> Path:
    """Index `docs` with the code in `root` (its own ingest, its own format)."""
    result = subprocess.run(
        [sys.executable, "-m", "rag.ingest", "--docs", str(docs), "--index", str(index)],
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"indexing {docs} with {root} failed:\n{result.stderr[-2000:]}")
    return index
