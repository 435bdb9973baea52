"""How a batch of deliveries is made durable: ``fsync`` each file and directory, or one
``syncfs(2)`` per filesystem per step (``mx.durability``, docs/performance.md).

SPEC §8 only asks that nothing be answered 250 before it is on disk.  ``fsync`` per file
costs one synchronous write round (data, inode, directory block) per file: on the bench
machine the kernel's share of that was ~18 % of MX CPU.  ``syncfs`` writes everything the
batch dirtied on one filesystem in one pass the block layer can merge — about half the
machine CPU and a third of the wall time per message (measured, docs/performance.md).

``syncfs`` is used only where it is a durability primitive: Linux ≥ 5.8, where it reports
writeback errors (before that it returned 0 even when a write was lost).  A writeback error
is seen by a ``syncfs`` on a descriptor opened *before* the error happened, so
:class:`Syncfs` keeps one descriptor per filesystem open from start-up: an error on any
file since the previous call fails the whole batch (451, the client retries) — a false
failure at worst, never a false 250.  It flushes every dirty page of that filesystem,
other programs' too: where maildirs share a filesystem with heavy unrelated writers, set
``mx.durability = "fsync"``.

A directory found on another filesystem than the one its root is on (a mount point inside
the maildir tree) is handed back to the caller to fsync the classic way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import threading
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

#: Linux gained writeback error reporting in syncfs(2) in 5.8.
_MIN_KERNEL = (5, 8)


def _kernel_version() -> tuple[int, int]:
    try:
        major, minor = platform.release().split(".")[:2]
        return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def _libc_syncfs() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _libc_syncfs() if platform.system() == "Linux" else None


def syncfs_supported() -> bool:
    return _SYNCFS is not None and _kernel_version() >= _MIN_KERNEL


#: Filesystem types "auto" leaves to fsync: network and FUSE filesystems, where what a
#: syncfs(2) promises depends on the client and server (an explicit "syncfs" still uses it).
_NETWORK_FS_PREFIXES = ("nfs", "cifs", "smb", "ceph", "glusterfs", "fuse", "9p", "afs")


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` is on, from /proc/self/mounts ("" if unknown)."""
    try:
        target = os.path.realpath(path)
        best, kind = "", ""
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
        return kind
    except OSError:
        return ""


def use_syncfs(setting: str, roots: Iterable[Path] = ()) -> bool:
    """``mx.durability``: "syncfs", "fsync" or "auto" (syncfs where supported and every
    root is on a local filesystem)."""
    if setting == "fsync":
        return False
    supported = syncfs_supported()
    if setting == "syncfs":
        if not supported:
            log.warning("mx.durability = syncfs needs Linux >= 5.8: using fsync")
        return supported
    return supported and not any(
        filesystem_type(root).startswith(_NETWORK_FS_PREFIXES) for root in roots)


class Syncfs:
    """One open descriptor per filesystem, opened on the roots at start-up."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self._lock = threading.Lock()
        self._fds: dict[int, int] = {}  # st_dev -> descriptor of a directory on it
        for root in roots:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            dev = os.fstat(fd).st_dev
            if dev in self._fds:
                os.close(fd)
            else:
                self._fds[dev] = fd

    def sync(self, directories: Iterable[Path]) -> list[Path]:
        """Make every write under ``directories`` durable.  Returns the directories on a
        filesystem opened after start-up: the caller fsyncs those (and their files)."""
        devs: set[int] = set()
        foreign: list[Path] = []
        for directory in set(directories):
            dev = os.stat(directory).st_dev
            if dev in self._fds:
                devs.add(dev)
            else:
                foreign.append(directory)
        assert _SYNCFS is not None
        for dev in devs:
            with self._lock:
                if _SYNCFS(self._fds[dev]) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"syncfs: {os.strerror(err)}")
        return foreign

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
