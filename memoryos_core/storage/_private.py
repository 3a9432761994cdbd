"""An embedded store's folder is private to its owner: 0700 folders, 0600 files, for every file
MemoryOS or Chroma writes in it.

Three layers, because Chroma creates files at moments we do not see (an HNSW index is written
the first time a collection reaches its sync threshold, inside some later write):

- the folder (and every parent this creates) is made 0700, so no other account can reach
  anything below it, whatever the files' own modes;
- where the filesystem supports POSIX ACLs (ext4, xfs, btrfs, tmpfs), each folder gets a default
  ACL of ``u::rwx,g::---,o::---``: the kernel then creates every later file 0600 and folder 0700,
  whoever creates it, without touching the process umask (which is process-wide and not thread-safe);
- ``tighten_tree`` takes group and other bits off everything already there (a store made by an
  older version, or a filesystem without ACLs); it runs when the folder is opened, after a
  client is (re)created, after a collection is created and after an erasure.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from pathlib import Path

logger = logging.getLogger("memoryos")

FILE_MODE = 0o600
DIR_MODE = 0o700
_ACL_DEFAULT = "system.posix_acl_default"
_UNDEFINED_ID = 0xFFFFFFFF


def _acl_entry(tag: int, perm: int) -> bytes:
    return struct.pack("<HHI", tag, perm, _UNDEFINED_ID)


# Linux's xattr form of a POSIX ACL (version 2): user::rwx, group::---, other::---.
_OWNER_ONLY_ACL = struct.pack("<I", 2) + _acl_entry(0x01, 7) + _acl_entry(0x04, 0) + _acl_entry(0x20, 0)


_HAS_ACL: dict[str, bool] = {}  # folder -> whether its default ACL took (then new files are private)


def make_private_folder(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (and any missing parent) as 0700, or tighten an existing one (logged), and
    give it the owner-only default ACL where the filesystem has ACLs."""
    folder = Path(path)
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        candidate.mkdir(mode=DIR_MODE, exist_ok=True)  # exist_ok: another process made it meanwhile
        os.chmod(candidate, DIR_MODE)  # mkdir's mode is cut by the umask; this is exact
    tighten_tree(folder)
    _HAS_ACL[str(folder)] = _set_default_acl(str(folder))


def tighten_new_entries(path: str | os.PathLike[str]) -> None:
    """After Chroma created something (a collection's segment folder): tighten the folder's
    direct entries that are group/other accessible. Nothing to do where the default ACL holds."""
    if _HAS_ACL.get(str(Path(path))):
        return
    with os.scandir(path) as entries:
        loose = [
            e.path for e in entries if not e.is_symlink() and e.stat(follow_symlinks=False).st_mode & 0o077
        ]
    for entry in loose:
        tighten_tree(entry)


def tighten_tree(path: str | os.PathLike[str]) -> int:
    """Remove group and other permissions from ``path`` and everything below it (symlinks are
    left alone, never followed); returns how many entries were changed, and logs it."""
    changed = 0
    for root, dirs, files in os.walk(path):
        changed += _tighten(root, is_dir=True)
        for name in files:
            changed += _tighten(os.path.join(root, name), is_dir=False)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    if changed:
        logger.warning(
            "made %d files and folders under %s private to their owner (were group/other readable)",
            changed,
            path,
        )
    return changed


def _tighten(path: str, *, is_dir: bool) -> int:
    try:
        info = os.lstat(path)
    except FileNotFoundError:  # removed meanwhile (an SQLite journal, say)
        return 0
    if stat.S_ISLNK(info.st_mode):
        return 0
    changed = 0
    if info.st_mode & 0o077:
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
        changed = 1
    if is_dir:
        _set_default_acl(path)
    return changed


def _set_default_acl(path: str) -> bool:
    """Give ``path`` the owner-only default ACL; False where the platform or filesystem has none."""
    setxattr = getattr(os, "setxattr", None)
    if setxattr is None:  # not Linux: the 0700 folder and tighten_tree still apply
        return False
    try:
        if os.getxattr(path, _ACL_DEFAULT) == _OWNER_ONLY_ACL:
            return True
    except OSError:
        pass  # no default ACL yet, or no ACL support
    try:
        setxattr(path, _ACL_DEFAULT, _OWNER_ONLY_ACL)
    except OSError as exc:  # a filesystem without ACLs (some network or overlay mounts)
        logger.debug("no default ACL on %s (%s): files rely on the private folder", path, exc)
        return False
    return True


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open`` creating the file 0600 (an existing file is made 0600 too)."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd
