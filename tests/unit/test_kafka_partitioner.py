"""The cached partitioner places every key exactly where Kafka's default partitioner does."""

from __future__ import annotations

import os

from aiokafka.partitioner import DefaultPartitioner

from chatcore.kafka import CachedPartitioner


def test_same_partition_as_the_default_for_every_key_and_count_even_when_cached() -> None:
    """Random keys, several partition counts, asked twice: always the default's answer."""
    cached, default = CachedPartitioner(max_keys=50), DefaultPartitioner()
    keys = [os.urandom(n) for n in (1, 5, 16, 32, 33, 64) for _ in range(20)]
    for count in (1, 3, 6, 12):
        partitions = list(range(count))
        for key in keys * 2:
            assert cached(key, partitions, partitions) == default(key, partitions, partitions)
