"""Is the From address of a message authentic? Read our MTA's Authentication-Results (RFC 8601).

When the site names its MTA's authserv-id (``[security] authserv_id``), only the
topmost Authentication-Results header carrying that id counts: the border MTA adds
it on top, and RFC 8601 §5 makes it remove older ones claiming its id, so any such
header further down was written by the sender and is forged. The verdict passes when
DMARC passes for the From domain, or DKIM or SPF passes for a domain aligned with it
(relaxed alignment, RFC 7489 §3.1: the same domain or one a subdomain of the other).

Without an authserv-id nothing can be checked, and From is trusted, as classic list
servers do (README and ``mailforum status`` say so).

The headers are parsed with the ``authres`` library, which knows RFC 8601's grammar
(comments, quoted values, versions) better than a regular expression would.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import authres

log = logging.getLogger(__name__)

_HEADER = re.compile(rb"^authentication-results[ \t]*:", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Verdict:
    authenticated: bool
    reason: str


def header_values(raw: bytes) -> list[str]:
    """The Authentication-Results values of a message, top to bottom, unfolded."""
    end = raw.find(b"\r\n\r\n")
    if end == -1:
        end = raw.find(b"\n\n")
    block = raw if end == -1 else raw[:end]
    values: list[str] = []
    current: list[bytes] | None = None
    for line in block.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line.strip())
            continue
        if current is not None:
            values.append(b" ".join(current).decode("utf-8", "replace"))
            current = None
        match = _HEADER.match(line)
        if match:
            current = [line[match.end() :].strip()]
    if current is not None:
        values.append(b" ".join(current).decode("utf-8", "replace"))
    return values


def _aligned(domain: str, other: str) -> bool:
    domain, other = domain.lower().strip("."), other.lower().strip(".")
    if not domain or not other:
        return False
    return domain == other or domain.endswith("." + other) or other.endswith("." + domain)


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2]


def _claims(value: str, authserv_id: str) -> bool:
    """Does this header value name ``authserv_id`` as its author?"""
    first = value.split(";", 1)[0].split()
    return bool(first) and first[0].lower() == authserv_id.lower()


def verdict(raw: bytes, authserv_id: str, from_address: str) -> Verdict:
    """Does the topmost Authentication-Results of our MTA vouch for ``from_address``?"""
    ours = [value for value in header_values(raw) if _claims(value, authserv_id)]
    if not ours:
        return Verdict(False, f"no Authentication-Results from {authserv_id}")
    try:
        header = authres.AuthenticationResultsHeader.parse_value(ours[0])
    except Exception as exc:  # authres raises its own SyntaxError and friends
        log.info("unparseable Authentication-Results from our MTA: %s", exc)
        return Verdict(False, f"unreadable Authentication-Results from {authserv_id}")
    return _judge(header, _domain_of(from_address))


def _judge(header: authres.AuthenticationResultsHeader, from_domain: str) -> Verdict:
    seen = []
    for result in header.results:
        method, outcome = str(result.method).lower(), str(result.result).lower()
        props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
        seen.append(f"{method}={outcome}")
        if outcome != "pass":
            continue
        if method == "dmarc":
            if props.get("header.from", from_domain).lower() == from_domain.lower():
                return Verdict(True, f"dmarc=pass for {from_domain}")
        elif method == "dkim":
            signer = props.get("header.d") or _domain_of(props.get("header.i", ""))
            if _aligned(signer, from_domain):
                return Verdict(True, f"dkim=pass aligned with {from_domain}")
        elif method == "spf":
            envelope = _domain_of(props.get("smtp.mailfrom", "")) or props.get("smtp.helo", "")
            if _aligned(envelope, from_domain):
                return Verdict(True, f"spf=pass aligned with {from_domain}")
    return Verdict(False, f"{', '.join(seen) or 'no results'} for {from_domain or 'no From domain'}")


def forged_headers(raw: bytes, authserv_id: str) -> list[str]:
    """Authentication-Results below the topmost one that claim our id: written by the sender."""
    return [value for value in header_values(raw) if _claims(value, authserv_id)][1:]
