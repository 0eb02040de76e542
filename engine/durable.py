"""Publishing artifacts so that a name in place survives a crash or power loss, and disk-full
errors that say what was needed.

An artifact is written under a temporary sibling name, its files and folders are fsynced, it is
renamed to its final name, and the parent folder is fsynced so the rename itself is on disk. Every
artifact that marks a stage done (checkpoints, merge output, samples, reports) goes through
`publish_folder` or `write_atomic`. A failed write removes the temporary sibling, so the disk
holds only complete artifacts, and a full disk (ENOSPC) becomes a DiskFullError naming the path,
the bytes it needed and the bytes free there.
"""
from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .errors import DiskFullError


def tmp_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def fsync_path(path: Path) -> None:
    """fsync one file or folder (a folder's fsync makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under `root`, then every folder, deepest first, `root` last."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def publish(tmp: Path, final: Path) -> None:
    """Make the complete `tmp` (a file or a folder) durable, rename it to `final` (which must not
    exist, or be an empty folder), then make the rename durable."""
    fsync_tree(tmp) if tmp.is_dir() else fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fault_for_test(final: Path) -> None:
    """Fault-injection point for systems where a test cannot mount a small filesystem: with
    IMM_TEST_ENOSPC=NAME, writing an artifact named NAME fails as a full disk would."""
    if os.environ.get("IMM_TEST_ENOSPC") == final.name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final))


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC as an OSError, or as a Rust library (safetensors) reports it: "... (os error 28)"."""
    while exc is not None:
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or f"(os error {errno.ENOSPC})" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def write_then_publish(final: Path, fill: Callable[[Path], object], nbytes: int) -> Path:
    """Call fill(tmp) to write the artifact (a file or a folder) at a temporary sibling of
    `final`, then publish it. On any failure the sibling is removed; ENOSPC becomes DiskFullError
    with `nbytes`, the caller's estimate of what the artifact takes."""
    final = Path(final)
    tmp = tmp_sibling(final)
    _remove(tmp)
    try:
        fill(tmp)
        _fault_for_test(final)
        publish(tmp, final)
    except BaseException as exc:
        _remove(tmp)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(final, nbytes, free_bytes(final.parent)) from exc
        raise
    return final


def write_atomic(final: Path, text: str) -> None:
    """A text file (UTF-8) published durably under `final`."""
    data = text.encode()
    write_then_publish(Path(final), lambda tmp: tmp.write_bytes(data), len(data))
