"""Fixtures for the fault tests: a disk that fills up, a file snapshot (states: tests/conftest.py)."""

import builtins
import errno
import os

import pytest



class _FullFile:
    """A writable file on a disk with `budget` bytes left: writes past it raise ENOSPC (after a short write)."""

    def __init__(self, fh, disk):
        self._fh, self._disk = fh, disk

    def write(self, data):
        size = len(data)
        if size > self._disk.left:
            part = data[: self._disk.left]
            self._fh.write(part)
            self._disk.left = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._disk.left -= size
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


class FullDisk:
    """Patch open/os.fdopen so that files opened for writing under `root` hit a full disk."""

    def __init__(self, monkeypatch, root, left=0):
        self.root, self.left = os.path.abspath(root), left
        real_open, real_fdopen = builtins.open, os.fdopen

        def is_write(mode):
            return any(c in mode for c in "wax+")

        def fake_open(file, mode="r", *a, **kw):
            fh = real_open(file, mode, *a, **kw)
            if is_write(mode) and isinstance(file, (str, os.PathLike)) and \
                    os.path.abspath(os.fspath(file)).startswith(self.root):
                return _FullFile(fh, self)
            return fh

        def fake_fdopen(fd, mode="r", *a, **kw):
            fh = real_fdopen(fd, mode, *a, **kw)
            return _FullFile(fh, self) if is_write(mode) else fh

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "fdopen", fake_fdopen)


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(root, left=0): from now on, writes under root fail with ENOSPC after `left` bytes."""
    return lambda root, left=0: FullDisk(monkeypatch, root, left)


@pytest.fixture
def snapshot():
    """snapshot(folder) -> {name: bytes} of every file in it (hidden temp files included)."""
    def take(folder):
        return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
                if os.path.isfile(os.path.join(folder, name))}
    return take
