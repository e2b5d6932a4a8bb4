"""The gateway's partitioner is Kafka's default one, with the hashes of recent keys kept."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from processor.gateway.sink import KeyHashCache


def test_every_key_goes_where_the_default_partitioner_sends_it() -> None:
    ours, default = KeyHashCache(size=64), DefaultPartitioner()
    rng = random.Random(3)
    keys = [f"conversation-{rng.randrange(500)}".encode() for _ in range(5000)]
    for partitions in ([0, 1, 2, 3, 4, 5], list(range(12)), [0]):
        for key in keys:  # repeats: answered from the cache, 64 at most kept
            assert ours(key, partitions, partitions) == default(key, partitions, partitions)


def test_a_keyless_record_goes_to_an_available_partition() -> None:
    assert KeyHashCache()(None, [0, 1, 2], [2]) == 2
