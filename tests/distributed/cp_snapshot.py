"""Export a commit of the library into an importable tree, to run the CP harness while the working tree changes.

    .venv/bin/python tests/distributed/cp_snapshot.py /tmp/sc_head [REV]
    PYTHONPATH=/tmp/sc_head OMP_NUM_THREADS=1 .venv/bin/python -m torch.distributed.run ... tests/distributed/cp_worker.py ...

The tree lays the folders out as ``pyproject.toml``'s ``package-dir`` maps them (``adapters`` ->
``smoothcache/builtin``, ``plugins`` -> ``smoothcache/plugins``, ...), so ``PYTHONPATH`` finds it before the
editable install; the installed entry points name modules (``smoothcache.builtin...``), which resolve there.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def export(target: Path, revision: str = "HEAD") -> None:
    """Write ``revision``'s packages under ``target`` at their import paths."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision], check=True, capture_output=True).stdout
    source = target / ".source"
    shutil.rmtree(target, ignore_errors=True)
    source.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    mapping = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        destination = target.joinpath(*package.split("."))
        if destination.exists():  # a sub-package mapped to where its parent's copy already put it
            continue
        shutil.copytree(source / folder, destination)


if __name__ == "__main__":
    export(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "HEAD")
