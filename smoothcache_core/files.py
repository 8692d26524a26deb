"""Files written atomically, keeping the identity of the file they replace.

Readers see the old content or the complete new one, never half a file: the bytes go to a temporary
file beside the target, which is renamed over it. The file keeps what identifies it to its user: an
existing file's permissions (and owner, where allowed), a symlink stays a symlink and its target is
written, and an error names the user's path, never the temporary one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: What to write: the bytes, or a function that writes them to an open binary file (a figure's savefig).
Content = bytes | Callable[[BinaryIO], None]


def _default_mode() -> int:
    """The permissions a plain ``open`` gives a new file: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_all(file: BinaryIO, content: Content) -> None:
    if callable(content):
        content(file)
    else:
        file.write(content)


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` about ``path`` (the temporary file is ours, not the user's business)."""
    return type(error)(error.errno, error.strerror or str(error), str(path))


def write_atomic(path: str | os.PathLike, content: Content) -> None:
    """Write ``content`` to ``path`` so that readers see either the old or the complete new file."""
    user_path = Path(path)
    target = Path(os.path.realpath(user_path))  # through symlinks: the link stays, its target is written
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        existing = os.stat(target) if target.exists() else None
        if existing is not None and target.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(user_path))
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, user_path) from error
    try:
        with os.fdopen(handle, "wb") as file:
            _write_all(file, content)
        if existing is not None:
            os.chmod(temporary, existing.st_mode & 0o7777)
            with contextlib.suppress(OSError):  # only the owner's superuser may give the file back
                os.chown(temporary, existing.st_uid, existing.st_gid)
        else:
            os.chmod(temporary, _default_mode())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _naming(error, user_path) from error
        raise


def read_limited(path: str | os.PathLike, limit: int, what: str, error_type: type[Exception]) -> bytes:
    """The bytes of ``path``, refusing a file over ``limit`` bytes before reading it; every failure
    (missing, a folder, no permission, a NUL in the name) is one ``error_type`` naming the path."""
    shown = repr(str(path))
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise error_type(f"{what} {shown} has {size:,} bytes, more than the {limit:,} a {what} may have; is it really a {what}?")
            return file.read(limit + 1)
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        reason = getattr(error, "strerror", None) or str(error)
        raise error_type(f"cannot read {what} {shown}: {reason}") from error


def library_version() -> str:
    """The installed smoothcache version, recorded in the provenance of profiles and schedules."""
    from importlib import metadata

    try:
        return metadata.version("smoothcache")
    except metadata.PackageNotFoundError:
        return "unknown"
