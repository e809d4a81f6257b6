"""Which partition a keyed record goes to: Kafka's default partitioner, in pure Python.

Ingest routes every sample to the partition its service's records live on, and the runtime
batches keyed records per partition before handing them to the producer; both must agree with
every other Kafka client, so this is the Java client's murmur2 (``Utils.murmur2``) bit for bit.
"""

from __future__ import annotations

import functools

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka computes it (32-bit, seed 0x9747B28C)."""
    length = len(data)
    h = _SEED ^ length
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail:
        rest = length & ~3
        if tail >= 3:
            h ^= data[rest + 2] << 16
        if tail >= 2:
            h ^= data[rest + 1] << 8
        h ^= data[rest]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record with this key. Cached: ingest
    asks for every sample and the runtime for every keyed record, of a few thousand services."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
