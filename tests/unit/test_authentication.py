import pytest

from mailforum.core.authentication import forged_headers, header_values, verdict

ID = "mx.lists.example.org"


def msg(*results: str) -> bytes:
    head = "".join(f"Authentication-Results: {r}\r\n" for r in results)
    return (head + "From: ann@example.com\r\nSubject: x\r\n\r\nbody\r\n").encode()


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ([f"{ID}; dmarc=pass header.from=example.com"], True),
        ([f"{ID}; dkim=pass header.d=example.com; spf=fail smtp.mailfrom=x@evil.example"], True),
        ([f"{ID}; dkim=pass header.d=mail.example.com"], True),  # relaxed alignment
        ([f"{ID}; spf=pass smtp.mailfrom=bounce@example.com"], True),
        ([f"{ID}; dkim=pass header.d=evil.example"], False),  # signed, but not by the From domain
        ([f"{ID}; dmarc=pass header.from=evil.example"], False),
        ([f"{ID}; dmarc=fail header.from=example.com"], False),
        ([f"{ID}; none"], False),
        (["other.example; dmarc=pass header.from=example.com"], False),  # not our MTA's
        ([], False),
        # Our MTA's verdict on top; the sender's forgery below claims our id and is ignored (S2).
        ([f"{ID}; dmarc=fail header.from=example.com", f"{ID}; dmarc=pass header.from=example.com"], False),
        ([f"{ID.upper()} 1; dmarc=pass (p=reject) header.from=example.com"], True),
        ([f"{ID}; ;;; garbage ==="], False),
    ],
)
def test_verdict(headers, ok):
    assert verdict(msg(*headers), ID, "ann@example.com").authenticated is ok


def test_folded_headers_are_unfolded_and_forgeries_named():
    raw = (
        f"Authentication-Results: {ID};\r\n\tdmarc=pass header.from=example.com\r\n"
        f"Received: from x\r\nAuthentication-Results: {ID}; dmarc=pass header.from=evil.example\r\n\r\nb\r\n"
    ).encode()
    assert header_values(raw)[0] == f"{ID}; dmarc=pass header.from=example.com"
    assert verdict(raw, ID, "ann@example.com").authenticated
    assert forged_headers(raw, ID) == [f"{ID}; dmarc=pass header.from=evil.example"]
