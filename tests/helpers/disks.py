"""Broken disks for the history's fault tests, as real as this machine allows.

- `small_tmpfs`: a tmpfs of a few hundred KiB mounted by the test (needs root and a kernel that lets this process
  mount, as in the CI container); None where mounting is not possible, and the test says what it used instead.
- `fill`: fill a file system until it refuses to write (ENOSPC).
- `read_only`: a file nobody may write: mode 0444 for an ordinary user; for root, whom permission bits do not
  stop, the immutable attribute (`chattr +i`), which stops root too. None where neither works.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_tmpfs(directory: Path, size_kib: int = 256) -> Iterator[Path | None]:
    """`directory` with a fresh tmpfs of `size_kib` KiB mounted on it, or None if this process cannot mount."""
    directory.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        yield None
        return
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def fill(directory: Path) -> int:
    """Write a filler file into `directory` until its file system is full; the bytes written."""
    written = 0
    chunk = b"\0" * 4096
    with (directory / "filler").open("wb", buffering=0) as filler:
        while True:
            try:
                written += filler.write(chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                return written


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[str | None]:
    """`path` made unwritable for this process while the block runs: how ("mode 0444" or "chattr +i"), or None
    when this process can make it unwritable by no means (root without chattr or on a file system without it)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield "mode 0444"
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False).returncode:
        yield None
        return
    try:
        yield "chattr +i"
    finally:
        subprocess.run([chattr, "-i", str(path)], capture_output=True, check=False)
