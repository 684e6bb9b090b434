"""One helper cuts lists and streams into chunks for the database."""

from __future__ import annotations

import pytest

from mailforum.batching import chunks


@pytest.mark.parametrize(("n", "size"), [(0, 3), (1, 3), (3, 3), (7, 3), (10, 1), (5, 500)])
def test_chunks_keep_every_item_in_order_and_none_too_large(n, size):
    parts = list(chunks(range(n), size))
    assert [i for part in parts for i in part] == list(range(n))
    assert all(1 <= len(part) <= size for part in parts)
    assert all(len(part) == size for part in parts[:-1])


def test_a_stream_is_read_one_chunk_at_a_time():
    read: list[int] = []

    def stream():
        for i in range(10):
            read.append(i)
            yield i

    first = next(chunks(stream(), 4))
    assert first == [0, 1, 2, 3] and read == [0, 1, 2, 3]


def test_a_chunk_size_below_one_is_refused():
    with pytest.raises(ValueError):
        next(chunks([1], 0))
