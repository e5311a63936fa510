"""Client request ids already answered: labels are joined on them, so one must not name two requests.

The last REMEMBERED_REQUEST_IDS ids, shared by every worker of a server: `conveyor serve` creates
the table in a file (shared memory where there is some, `/dev/shm`) that each worker maps, so an
id answered by one worker gets 409 from the others too (and from either API), and a restarted
worker still knows them. A server built in one process keeps the table in its own memory.

The table holds 16-byte BLAKE2b digests of the ids: a ring of the last ids in arrival order, and
an open-addressing index (linear probing, deletion by backward shift: no tombstones) of twice
the ring's size naming each id's place in the ring. Reserving an id adds it, evicting the oldest;
releasing it (its request failed) removes it. Every change is made under the file's lock (flock)
and a thread lock; a change costs a few microseconds and touches a few cache lines.
"""
from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
from pathlib import Path

REMEMBERED_REQUEST_IDS = 100_000  # a client id answered again within these gets 409
_HEADER = struct.Struct("<8sQQQ")  # magic, ring size, next ring place, ids held
_MAGIC = b"cvyids01"
_SLOT = struct.Struct("<16sQ")  # digest, ring place + 1 (0: empty)
_EMPTY = bytes(16)


def create(folder: str | Path | None = None, size: int = REMEMBERED_REQUEST_IDS) -> Path:
    """A new, empty shared table file (in /dev/shm if it exists); its owner removes it."""
    shared = Path("/dev/shm")
    where = folder or (shared if shared.is_dir() and os.access(shared, os.W_OK) else None)
    fd, path = tempfile.mkstemp(prefix="conveyor-request-ids-", dir=where)
    try:
        os.ftruncate(fd, _bytes(size))
        os.pwrite(fd, _HEADER.pack(_MAGIC, size, 0, 0), 0)
    finally:
        os.close(fd)
    return Path(path)


def _slots(size: int) -> int:
    return 1 << (2 * size - 1).bit_length()  # a power of two, at least twice the ring


def _bytes(size: int) -> int:
    return _HEADER.size + _slots(size) * _SLOT.size + size * 16


class RequestIds:
    """reserve(id): False if the id was already answered (or is being answered); else remembered.
    release(id): forget an id whose request failed."""

    def __init__(self, path: str | Path | None = None, size: int = REMEMBERED_REQUEST_IDS):
        self._lock = threading.Lock()
        if path is None:
            self._fd = -1
            self._map = mmap.mmap(-1, _bytes(size))
            self._map[: _HEADER.size] = _HEADER.pack(_MAGIC, size, 0, 0)
        else:
            self._fd = os.open(path, os.O_RDWR)
            self._map = mmap.mmap(self._fd, 0)
        magic, self.size, _, _ = _HEADER.unpack_from(self._map, 0)
        if magic != _MAGIC:
            raise ValueError(f"{path} is not a request-id table")
        self._slots = _slots(self.size)
        self._mask = self._slots - 1
        self._ring = _HEADER.size + self._slots * _SLOT.size

    def reserve(self, request_id: str) -> bool:
        digest = _digest(request_id)
        with self._locked():
            if self._find(digest) >= 0:
                return False
            _, size, place, held = _HEADER.unpack_from(self._map, 0)
            if held == size:  # forget the oldest id (unless it was released, or is held at a newer place)
                oldest = self._map[self._ring + place * 16 : self._ring + place * 16 + 16]
                slot = self._find(oldest)
                if slot >= 0 and _SLOT.unpack_from(self._map, self._offset(slot))[1] == place + 1:
                    self._delete(slot)
            self._map[self._ring + place * 16 : self._ring + place * 16 + 16] = digest
            self._insert(digest, place + 1)
            _HEADER.pack_into(self._map, 0, _MAGIC, size, (place + 1) % size, min(held + 1, size))
            return True

    def release(self, request_id: str) -> None:
        digest = _digest(request_id)
        with self._locked():
            slot = self._find(digest)
            if slot >= 0:
                self._delete(slot)

    def close(self) -> None:
        self._map.close()
        if self._fd >= 0:
            os.close(self._fd)

    # the index
    def _locked(self):
        return _Locked(self._lock, self._fd)

    def _offset(self, slot: int) -> int:
        return _HEADER.size + slot * _SLOT.size

    def _home(self, digest: bytes) -> int:
        return int.from_bytes(digest[:8], "little") & self._mask

    def _find(self, digest: bytes) -> int:
        slot = self._home(digest)
        while True:
            found = self._map[self._offset(slot) : self._offset(slot) + 16]
            if found == digest:
                return slot
            if found == _EMPTY:
                return -1
            slot = (slot + 1) & self._mask

    def _insert(self, digest: bytes, place: int) -> None:
        slot = self._home(digest)
        while self._map[self._offset(slot) : self._offset(slot) + 16] != _EMPTY:
            slot = (slot + 1) & self._mask
        _SLOT.pack_into(self._map, self._offset(slot), digest, place)

    def _delete(self, hole: int) -> None:
        """Empty `hole`, moving back the entries after it that would no longer be found."""
        slot = hole
        while True:
            slot = (slot + 1) & self._mask
            digest, place = _SLOT.unpack_from(self._map, self._offset(slot))
            if digest == _EMPTY:
                break
            home = self._home(digest)
            if (slot - home) & self._mask >= (slot - hole) & self._mask:  # its probe passes the hole
                _SLOT.pack_into(self._map, self._offset(hole), digest, place)
                hole = slot
        _SLOT.pack_into(self._map, self._offset(hole), _EMPTY, 0)


class _Locked:
    """The thread lock, then the file's lock (flock excludes other processes, not threads)."""

    __slots__ = ("fd", "lock")

    def __init__(self, lock: threading.Lock, fd: int):
        self.lock, self.fd = lock, fd

    def __enter__(self) -> None:
        self.lock.acquire()
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.lock.release()


def _digest(request_id: str) -> bytes:
    digest = hashlib.blake2b(request_id.encode(), digest_size=16).digest()
    return digest if digest != _EMPTY else b"\x01" + digest[1:]
