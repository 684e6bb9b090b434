"""Digests in SMTP DATA form made ahead (mail.wire): byte for byte what the relay client makes."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from mailforum.mail import digest as digest_mail
from mailforum.mail import wire
from mailforum.mail.compose import ListIdentity, PostView
from mailforum.runners.relay_client import wire_data

IDENT = ListIdentity("dev", "Developers", "lists.example.org", "https://forum.example.org", "[dev]")
NOW = dt.datetime(2026, 11, 26, 7, tzinfo=dt.UTC)
MID = "<digest.dev.1.0-7@lists.example.org>"
UNSUBSCRIBE = ("https://forum.example.org/unsubscribe/x", "mailto:dev+unsubscribe@lists.example.org")
# Lines a post may hold that dot-stuffing must get right: a lone dot would end DATA early.
DOTS = ".\n..\n.hidden\nend.\n.\n\n. spaced\n" + "x" * 75 + ".\n"


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: plain\r\n\r\nA canonical body.\r\n",
        b"Subject: no final line end\r\n\r\nbody",
        b"Subject: bare LF\n\nline one\nline two\n",
        b"Subject: mixed\r\n\r\none\ntwo\rthree\r\n\r\r\n",
        b".Subject: a leading dot\r\n\r\nx\r\n",
        b"Subject: dots\r\n\r\n.\r\n..\r\n.hidden\r\nend.\r\n",
        b"",
    ],
)
def test_wire_is_what_the_relay_client_makes(message: bytes) -> None:
    data = wire.wire(message)
    assert isinstance(data, wire.WireData) and data == wire_data(message)
    assert wire_data(data) is data  # sent as it is
    assert wire.wire(data) is data


def test_message_undoes_wire() -> None:
    message = b"Subject: dots\r\n\r\n.\r\n..\r\n.hidden\r\nend.\r\n"
    assert wire.message(wire.wire(message)) == message
    assert wire.message(wire.wire(b"." + message)) == b"." + message
    assert wire.message(message) is message


def test_stuff_keeps_a_piece_that_needs_nothing() -> None:
    piece = b"a line\r\nanother\r\n"
    assert wire.stuff(piece, True) is piece
    assert wire.stuff(b".x\r\n.y", False) == b".x\r\n..y"
    assert wire.stuff(b".x\r\n.y", True) == b"..x\r\n..y"


def _addresses(post_ids: tuple[int, ...], lead: str = "dev") -> list[str]:
    return [f"{lead}+r-{pid}-abc@lists.example.org" for pid in post_ids]


def _standard(text: str, html: str, ids: tuple[int, ...]) -> digest_mail.SharedDigest:
    return digest_mail.build(IDENT, "Daily digest", text, html, NOW, ids)


def _embedded(post_id: int, text: str) -> digest_mail.Embedded:
    view = PostView(f"<p{post_id}@example.com>", "Alpha", "Ann", "ann@example.com", NOW, 1, ())
    return digest_mail.embed(IDENT, digest_mail.EmbeddedPost(post_id, view, text))


def _shared_digests() -> list[digest_mail.SharedDigest]:
    m5, m7 = digest_mail.marker(5), digest_mail.marker(7)
    return [
        _standard(f"Intro\n{DOTS}Reply: {m5}\n.{m7}\n{DOTS}", f"<a href='mailto:{m5}'>r</a>\n{DOTS}", (5, 7)),
        _standard(f"{m5}\n.\n{m7}", f".{m5}", (5, 7)),  # slots first and last
        _standard(DOTS, DOTS, ()),  # no slots at all
        digest_mail.build_mime(
            IDENT,
            "Daily digest",
            f"{DOTS}5. {m5}\n7. {m7}\n",
            f".\n-- \n{DOTS}",
            [_embedded(5, DOTS), _embedded(7, ".\n")],
            NOW,
        ),
    ]


@pytest.mark.parametrize("lead", ["dev", ".dev"])
def test_a_digest_in_wire_form_is_what_the_relay_client_makes_of_it(lead: str) -> None:
    """Shared parts stuffed once, personal parts per copy: the same bytes as stuffing the
    whole copy, also where a reply address starts a line (``lead``) or a slot ends the body."""
    for shared in _shared_digests():
        addresses = _addresses(shared.post_ids, lead)
        plain = shared.join(MID, addresses, UNSUBSCRIBE)
        data = shared.join(MID, addresses, UNSUBSCRIBE, wire=True)
        assert not isinstance(plain, wire.WireData) and isinstance(data, wire.WireData)
        assert data == wire_data(plain)
        assert wire.message(data) == plain
        assert (
            shared.personalise(
                MID, dict(zip(shared.post_ids, addresses, strict=True)).__getitem__, UNSUBSCRIBE
            )
            == plain
        )
        parsed = email.message_from_bytes(plain, policy=email.policy.default)
        assert parsed["Message-ID"] == MID and not parsed.defects


def test_shared_wire_parts_cost_memory_only_where_they_differ() -> None:
    plain = _standard("no dots here\n", "<p>none</p>", ())
    assert plain.wire_gaps[0] is plain.gaps[0] and plain.wire_head is plain.head
    assert plain.size == len(plain.head) + sum(len(g) for g in plain.gaps)
    dotted = _standard(DOTS, DOTS, ())
    assert dotted.size > len(dotted.head) + sum(len(g) for g in dotted.gaps)


def test_a_bad_reply_address_is_refused_whichever_form() -> None:
    shared = _standard(f"{digest_mail.marker(5)}\n", "h", (5,))
    for bad in ["dev+r-x@lists.example.org\r\nBcc: x@y", "", "a b@c"]:
        for form in (False, True):
            with pytest.raises(ValueError):
                shared.join(MID, [bad], UNSUBSCRIBE, wire=form)
    with pytest.raises(ValueError, match="2 reply addresses for 1 posts"):
        shared.join(MID, ["a@b", "c@d"], UNSUBSCRIBE)
