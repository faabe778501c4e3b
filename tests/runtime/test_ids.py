"""Request ids: ULID-shaped, unique, sorted by creation time, also across a fork."""

from __future__ import annotations

import os
import re

from llamaswap_es.runtime.ids import RANDOM_BLOCK, UlidIds

ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def test_ids_are_unique_ulids_that_sort_by_time() -> None:
    clock = iter(range(1_700_000_000_000, 1_700_000_000_000 + 10_000))
    ids = UlidIds(lambda: next(clock))
    made = [ids.new_id() for _ in range(10_000)]  # well past one block of random bytes
    assert RANDOM_BLOCK < 10_000 * 10
    assert all(ULID.fullmatch(i) for i in made)
    assert len(set(made)) == len(made)
    assert made == sorted(made)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids = UlidIds(lambda: 0)
    ids.new_id()  # the parent has a block of random bytes in hand
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, ids.new_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert ULID.fullmatch(child_id)
    assert child_id != ids.new_id()


def test_the_first_ten_characters_are_the_milliseconds_in_crockford_base32() -> None:
    """What SQL and the UI sort by, and what a ULID tool decodes: the time, 48 bits."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for ms in (0, 1, 1_700_000_000_123, 2**48 - 1):
        made = UlidIds(lambda ms=ms: ms).new_id()
        decoded = 0
        for char in made[:10]:
            decoded = decoded * 32 + alphabet.index(char)
        assert decoded == ms, made
