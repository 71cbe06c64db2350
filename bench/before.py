"""The code before an integration, for the before/after figures of `make bench`.

`before_tree()` extracts a commit's `src/` (and, on request, other top-level paths such as `bench/`) from
this checkout's git history once, under .cache/bench-before/<commit[:12]>/. A benchmark then runs that code
in a fresh process with PYTHONPATH pointing at it (bench/learning_scale.py, bench/protocol_round.py, the
ledger bench's before figures), using only the public API both versions share.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
#: main before issues 11, 12 and 15 were integrated (roles doing their own secure round, the issue-12 chain
#: rules, the streaming trainer): the "before" of every before/after figure
BEFORE_COMMIT = "1ab1a7ac1cc15f276bd88c07ee363b498270795c"


def before_tree(commit: str = BEFORE_COMMIT, paths: tuple[str, ...] = ("src",)) -> Path:
    """The directory holding `paths` of `commit`, each extracted once (raises OSError or CalledProcessError
    when the commit is not in this checkout's history, e.g. a shallow clone)."""
    out = CACHE / "bench-before" / commit[:12]
    for path in paths:
        if (out / path).exists():
            continue
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, path],
                                 capture_output=True, check=True).stdout
        tmp = out / f"{path.replace('/', '_')}.tar"
        tmp.write_bytes(archive)
        with tarfile.open(tmp) as tar:
            tar.extractall(out, filter="data")
        tmp.unlink()
    marker = out / ".commit"  # so a snapshot's own `git rev-parse` fallback can say which commit it is
    if not marker.exists():
        marker.write_text(commit + "\n")
    return out


def before_src(commit: str = BEFORE_COMMIT) -> Path:
    """src/ of `commit`."""
    return before_tree(commit) / "src"
