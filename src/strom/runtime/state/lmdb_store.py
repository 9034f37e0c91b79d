"""The on-disk half of the disk state backend: an LMDB environment and the value encoding.

``LmdbStore`` is one LMDB environment in a private directory with a named database per state.
Durability is deliberately off (no fsync, no meta sync): the store is scratch space that lives
as long as its subtask, and checkpoints are what survives a crash. LMDB's map size is a
reservation of address space, grown by doubling whenever a write finds it full.

``ValueCodec`` encodes a table value as one tag byte and the ``StateSerializer``'s bytes. TTL
timestamps travel outside the serializer's payload, so a custom serializer only ever sees user
values (and the ``list``/``dict`` containers of list and map state):

* a pickle (first byte ``0x80``) — a plain value, with the default ``PickleSerializer`` (no
  tag needed, which saves a copy on every read and write);
* ``0x00`` payload — a plain value, with any other serializer;
* ``0x01`` ts payload — a ``TtlValue`` (value, reducing and aggregating state with TTL);
* ``0x02`` n ts*n payload(list) — a list of ``TtlValue`` (list state with TTL);
* ``0x03`` n ts*n payload(dict) — a dict of ``TtlValue`` (map state with TTL; the serializer
  must keep the dict's order, as pickle and JSON do).
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import lmdb

from strom.runtime.state.serializer import PickleSerializer, StateSerializer
from strom.runtime.state.ttl import TtlValue

_LEN = struct.Struct(">I")
_TS = struct.Struct(">q")
_MAX_DBS = 256


class LmdbStore:
    """Single-threaded use only (the task thread), which is why LMDB's locking is off."""

    def __init__(self, path: str, *, map_size: int = 256 << 20) -> None:
        self.path = path
        self._map_size = map_size
        self.env = lmdb.open(
            path,
            map_size=map_size,
            max_dbs=_MAX_DBS,
            sync=False,
            metasync=False,
            lock=False,
            readahead=False,  # random access to state larger than RAM: no read-ahead
            meminit=False,
        )
        self.max_key_size: int = self.env.max_key_size()
        self.reader = self.env.begin()
        """The current read transaction (renewed after every write): ``reader.get`` is the
        read path of every cache miss, so tables call it directly."""
        self._dbs = 0

    def open_db(self) -> Any:
        """A new, empty database (one per state name)."""
        if self._dbs >= _MAX_DBS:
            raise RuntimeError(f"more than {_MAX_DBS} keyed states in one operator")
        self._dbs += 1
        db = self.env.open_db(b"s%d" % self._dbs)
        self._renew()  # a read transaction older than the database cannot see it
        return db

    def _renew(self) -> None:
        # LMDB readers see the snapshot they began with: start a fresh one after each write
        self.reader.abort()
        self.reader = self.env.begin()

    def write(self, db: Any, puts: list[tuple[bytes, bytes]], deletes: list[bytes]) -> None:
        """Apply ``puts`` and ``deletes`` in one transaction (growing the map if it is full)."""
        while True:
            try:
                with self.env.begin(write=True, db=db) as txn:
                    for key in deletes:
                        txn.delete(key)
                    if puts:
                        txn.cursor().putmulti(puts)
                break
            except lmdb.MapFullError:
                self.reader.abort()
                self._map_size *= 2
                self.env.set_mapsize(self._map_size)
                self.reader = self.env.begin()
        self._renew()

    def drop(self, db: Any) -> None:
        """Empty database ``db``."""
        with self.env.begin(write=True) as txn:
            txn.drop(db, delete=False)
        self._renew()

    def scan(self, db: Any) -> Iterator[tuple[bytes, bytes]]:
        """Every entry of ``db`` in key order, from a snapshot taken at the first ``next``."""
        txn = self.env.begin(db=db)
        try:
            yield from txn.cursor().iternext(keys=True, values=True)
        finally:
            txn.abort()

    def count(self, db: Any) -> int:
        entries: int = self.reader.stat(db)["entries"]
        return entries

    def size_bytes(self) -> int:
        """Bytes the store takes on disk."""
        try:
            return os.stat(os.path.join(self.path, "data.mdb")).st_size
        except OSError:
            return 0

    def close(self) -> None:
        self.reader.abort()
        self.env.close()


class ValueCodec:
    """Table values to bytes and back (see the module docstring for the layout)."""

    def __init__(self, serializer: StateSerializer) -> None:
        self.serializer = serializer
        self.raw_pickle = False
        """Plain values are stored as bare pickles (see the module docstring)."""
        self._dumps: Callable[[Any], bytes] = serializer.dumps
        self._loads: Callable[[bytes], Any] = serializer.loads
        # protocol >= 2 pickles start with 0x80; call pickle directly: no frame per value
        if type(serializer) is PickleSerializer and serializer.protocol >= 2:
            self.raw_pickle = True
            self._dumps = partial(pickle.dumps, protocol=serializer.protocol)
            self._loads = pickle.loads
        self._plain_tag = b"" if self.raw_pickle else b"\x00"
        self.dumps_plain = self._dumps if self.raw_pickle else self.encode
        """Encodes a value that is neither a ``TtlValue`` nor a list or dict (no dispatch)."""

    def encode(self, value: Any) -> bytes:
        t = type(value)
        if t is TtlValue:
            return b"\x01" + _TS.pack(value.timestamp) + self._dumps(value.value)
        if t is list and value and type(value[0]) is TtlValue:
            n = len(value)
            stamps = struct.pack(f">{n}q", *[e.timestamp for e in value])
            payload = self._dumps([e.value for e in value])
            return b"\x02" + _LEN.pack(n) + stamps + payload
        if t is dict and value and type(next(iter(value.values()))) is TtlValue:
            n = len(value)
            stamps = struct.pack(f">{n}q", *[e.timestamp for e in value.values()])
            payload = self._dumps({k: e.value for k, e in value.items()})
            return b"\x03" + _LEN.pack(n) + stamps + payload
        return self._plain_tag + self._dumps(value)

    def decode(self, data: bytes) -> Any:
        tag = data[0]
        if tag == 0x80:
            return self._loads(data)
        if tag == 0:
            return self._loads(data[1:])
        if tag == 1:
            return TtlValue(self._loads(data[9:]), _TS.unpack_from(data, 1)[0])
        (n,) = _LEN.unpack_from(data, 1)
        stamps = struct.unpack_from(f">{n}q", data, 5)
        payload = self._loads(data[5 + 8 * n :])
        if tag == 2:
            return [TtlValue(v, ts) for v, ts in zip(payload, stamps, strict=True)]
        if tag == 3:
            return {k: TtlValue(v, ts) for (k, v), ts in zip(payload.items(), stamps, strict=True)}
        raise ValueError(f"corrupt state value (tag {tag})")
