"""archive.Mbox splits an mbox file exactly as the standard library's mailbox.mbox does."""

from __future__ import annotations

import mailbox
import random
import subprocess
import sys
from pathlib import Path

import pytest

from mailforum.core import archive, archive_parse
from mailforum.core.archive import Mbox


def _both(path: Path) -> tuple[list[bytes], list[bytes]]:
    box = mailbox.mbox(str(path), create=False)
    try:
        want = [box.get_bytes(key, from_=True) for key in box.iterkeys()]
    finally:
        box.close()
    with Mbox(str(path)) as entries:
        got = [entries[k] for k in range(len(entries))]
    return got, want


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b"no From_ line\nat all\n",
        b"From a\n",
        b"From a",
        b"From a\n\n",
        b"From a\n\n\n",
        b"preamble\nFrom a\nbody\n\nFrom c\nlast line without newline",
        b"From a\nbody\nFrom c\n\n",  # no empty line before the next From_ line
        b"\nFrom a\n",
        b"From a\r\n\r\nFrom b\r\n",  # CRLF: "\r\n" is not the empty line mbox means
        b"From a\n>From quoted\n\nFrom c\n\n",
        b"From a\nFrom b\n",
        b"From a\nSubject: x\n\n From not at the start\nFrom: header\n\n",
    ],
)
def test_mbox_splits_as_mailbox_does(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "box.mbox"
    path.write_bytes(data)
    got, want = _both(path)
    assert got == want


def test_mbox_splits_random_files_as_mailbox_does(tmp_path: Path) -> None:
    pieces = [b"From x", b"\n", b"From ", b"a", b"\r", b">From y", b"\n\n", b" "]
    rng = random.Random(16)
    path = tmp_path / "box.mbox"
    for _ in range(500):
        path.write_bytes(b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14))))
        got, want = _both(path)
        assert got == want, path.read_bytes()


def test_parser_process_module_is_light() -> None:
    """The import's parser process (spawned) loads the mail parser, not the processing path."""
    assert archive_parse.parse_chunk([b"Subject: hi\n\nbody\n"])[0][1] is None
    code = "import sys, mailforum.core.archive_parse; print('sqlalchemy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_first_batches_ramp_up_to_the_batch_size() -> None:
    """An import stores small batches first (the parser is ahead sooner), then whole ones."""
    sizes = [len(chunk) for chunk in archive.ramped(range(1000), 300, first=64)]
    assert sizes == [64, 128, 256, 300, 252]
    assert [len(c) for c in archive.ramped(range(5), 500, first=64)] == [5]
    assert [len(c) for c in archive.ramped(range(5), 2, first=64)] == [2, 2, 1]
    assert list(archive.ramped([], 500)) == []
    assert [x for chunk in archive.ramped(range(1000), 300) for x in chunk] == list(range(1000))
