import pytest

from mailforum.errors import RecipientRefused
from mailforum.mail.addresses import (
    LOCAL_PART_MAX,
    MAX_LIST_NAME,
    Kind,
    Recipient,
    list_address,
    parse_recipient,
    valid_list_name,
    widest_arg,
)

D = "lists.example.org"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (f"dev@{D}", Recipient(Kind.POST, "dev")),
        ("Dev@LISTS.example.org", Recipient(Kind.POST, "dev")),
        (f"dev-request@{D}", Recipient(Kind.REQUEST, "dev")),
        (f"dev-owner@{D}", Recipient(Kind.OWNER, "dev")),
        (f"dev-bounces@{D}", Recipient(Kind.BOUNCES, "dev")),
        (f"dev-bounces+AbC123@{D}", Recipient(Kind.BOUNCES, "dev", "AbC123")),
        (f"dev+subscribe@{D}", Recipient(Kind.SUBSCRIBE, "dev")),
        (f"dev+join@{D}", Recipient(Kind.SUBSCRIBE, "dev")),
        (f"dev+unsubscribe@{D}", Recipient(Kind.UNSUBSCRIBE, "dev")),
        (f"dev+watch-42@{D}", Recipient(Kind.WATCH, "dev", "42")),
        (f"dev+mute-42@{D}", Recipient(Kind.MUTE, "dev", "42")),
        (f"dev+r-TokEN_x@{D}", Recipient(Kind.REPLY, "dev", "TokEN_x")),
        (f"dev+confirm-Tok@{D}", Recipient(Kind.CONFIRM, "dev", "Tok")),
        (f"my.list-2@{D}", Recipient(Kind.POST, "my.list-2")),
    ],
)
def test_recipient_grammar(address, expected):
    assert parse_recipient(address, D) == expected


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ("dev@gmail.com", "550 5.7.1"),
        (f"dev%gmail.com@{D}", "550 5.7.1"),
        (f"gmail.com!dev@{D}", "550 5.7.1"),
        (f"dev+whatever@{D}", "550 5.1.1"),
        (f"dev-request+x@{D}", "550 5.1.1"),
        (f'"dev"@{D}', "550 5.1.1"),
        ("no-at-sign", "501 5.1.3"),
        (f"+r-x@{D}", "550 5.1.1"),
    ],
)
def test_refusals(address, code):
    with pytest.raises(RecipientRefused) as refused:
        parse_recipient(address, D)
    assert refused.value.smtp_reply.startswith(code)


@pytest.mark.parametrize("kind", list(Kind))
def test_list_address_is_the_inverse(kind):
    with_arg = (Kind.WATCH, Kind.MUTE, Kind.REPLY, Kind.CONFIRM, Kind.BOUNCES, Kind.ENABLE, Kind.MODERATE)
    arg = "Tok42" if kind in with_arg else ""
    assert parse_recipient(list_address("dev", D, kind, arg), D) == Recipient(kind, "dev", arg)


def test_list_names():
    assert valid_list_name("dev")
    assert not valid_list_name("dev-request")
    assert not valid_list_name("Dev")
    assert not valid_list_name("a+b")


def test_every_address_of_the_longest_list_name_fits_64_octets():
    """B53: names of 24 characters and more are accepted, and every address we write for the
    longest accepted name, with the widest tokens (ids up to tokens.MAX_ID), fits."""
    assert MAX_LIST_NAME >= 24
    name = "a" * MAX_LIST_NAME
    assert valid_list_name(name) and not valid_list_name(name + "b")
    for kind in Kind:
        local = list_address(name, D, kind, widest_arg(kind)).partition("@")[0]
        assert len(local.encode()) <= LOCAL_PART_MAX, kind
        assert parse_recipient(f"{local}@{D}", D).kind is kind
