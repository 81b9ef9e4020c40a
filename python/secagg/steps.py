"""A step store on disk: where a :class:`secagg.Client` records the last step it acted on.

A client's snapshot can be rebuilt into a client (``Client.restore``), so an older snapshot
could be rebuilt too and fed other messages than the first time: it would sign a second
survivor list, or reveal a second kind of share for the same neighbour. The client
therefore writes a step counter, before every step it takes, to a store that the caller
keeps apart from the snapshots, and ``Client.restore`` refuses a snapshot that is not at
the stored step (``StaleSnapshotError``).

The contract of a store: a mutable mapping from ``str`` to ``int`` that outlives the client
objects, kept where the client's keys live (on the same durable storage, with the same
access rights), that is never rolled back together with the snapshots, and whose writes
are durable when ``__setitem__`` returns. One store may serve many clients (keys are
``secagg-step-<random id>``); a client that finished its round deletes its key.

:class:`StepStore` keeps each key in a file of one directory, written atomically (a
temporary file, fsync, rename) with mode 0600.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Iterator, MutableMapping

__all__ = ["StepStore"]

_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")


class StepStore(MutableMapping[str, int]):
    """Step counters as files in ``directory`` (created with mode 0700 when missing)."""

    def __init__(self, directory: "str | os.PathLike[str]") -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)

    def _path(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise KeyError(f"not a step-store key: {key!r}")
        return os.path.join(self.directory, key)

    def __getitem__(self, key: str) -> int:
        try:
            with open(self._path(key), "rb") as f:
                text = f.read(32)
        except FileNotFoundError:
            raise KeyError(key) from None
        try:
            return int(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"step store {self.directory}: {key} holds no step count") from None

    def __setitem__(self, key: str, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"a step is a non-negative int, not {value!r}")
        path = self._path(key)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(str(value).encode("ascii"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._sync_directory()

    def __delitem__(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            raise KeyError(key) from None
        self._sync_directory()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(n for n in os.listdir(self.directory) if _KEY.fullmatch(n)))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"StepStore({self.directory!r})"
