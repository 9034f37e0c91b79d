"""State keys as bytes for an on-disk store: a canonical encoding, so equal keys give equal bytes.

A store finds a key by its bytes, while the heap backend finds it by ``==`` and ``hash``; the
two agree only if every pair of equal keys encodes identically. Plain ``pickle`` does not
guarantee that (its memo makes ``("a", "a")`` encode differently depending on whether the two
strings are one object, and ``1 == 1.0 == True`` pickle differently), so the common key types
get a canonical form here:

* ``str``, ``bytes``, ``None``; ``int``, ``bool`` and integral ``float`` all as the integer
  (so ``1``, ``1.0`` and ``True`` are one key, as in a dict; it decodes as ``int``);
* other ``float``s by their IEEE bytes; ``tuple`` and ``frozenset`` element by element (a
  frozenset's elements sorted by their encoding, as its iteration order is not canonical);
* anything else as a pickle without memo (deterministic for enums, dataclasses, ...; a key
  type whose pickle varies between equal values is not supported, as in Flink, where keys
  need a deterministic serialization).
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

_LEN = struct.Struct(">I")
_FLOAT = struct.Struct(">d")


def _pickle_without_memo(key: Any) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=5)
    pickler.fast = True  # no memo: identical values always give identical bytes
    pickler.dump(key)
    return buf.getvalue()


def _join(parts: list[bytes]) -> bytes:
    pack = _LEN.pack
    return b"".join(pack(len(p)) + p for p in parts)


def encode_key(key: Any) -> bytes:
    t = type(key)
    if t is str:
        text: str = key
        return b"s" + text.encode("utf-8", "surrogatepass")
    if t is int:
        return b"i%d" % key
    if t is bytes:
        raw: bytes = key
        return b"b" + raw
    if t is tuple:
        return b"t" + _join([encode_key(part) for part in key])
    if key is None:
        return b"n"
    if t is bool:
        return b"i%d" % key
    if t is float:
        return b"i%d" % key if key.is_integer() else b"f" + _FLOAT.pack(key)
    if t is frozenset:
        return b"z" + _join(sorted(encode_key(part) for part in key))
    return b"p" + _pickle_without_memo(key)


def _split(data: bytes) -> list[Any]:
    parts = []
    pos, end = 1, len(data)
    unpack = _LEN.unpack_from
    while pos < end:
        (n,) = unpack(data, pos)
        pos += 4
        parts.append(decode_key(data[pos : pos + n]))
        pos += n
    return parts


def decode_key(data: bytes) -> Any:
    tag = data[:1]
    if tag == b"s":
        return data[1:].decode("utf-8", "surrogatepass")
    if tag == b"i":
        return int(data[1:])
    if tag == b"b":
        return data[1:]
    if tag == b"t":
        return tuple(_split(data))
    if tag == b"n":
        return None
    if tag == b"f":
        return _FLOAT.unpack(data[1:])[0]
    if tag == b"z":
        return frozenset(_split(data))
    if tag == b"p":
        return pickle.loads(data[1:])
    raise ValueError(f"not an encoded state key: {data[:16]!r}")
