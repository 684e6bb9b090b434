"""Parse cost: stdlib policies against mailforum's parser, and hostile MIME refused.

    .venv/bin/python bench/parse.py [--messages 3000] [--seed 1]

The messages come from bench/threading.py's generator (a list archive as real
clients write it: plain, quoted-printable, format=flowed, multipart/alternative,
HTML-only; about 3.5 kB each). For each way of parsing it reads what the threader
and the post need: Message-ID, From, Subject, Date, References and the text body.
Figures are CPU time (process_time), so other load on the machine matters less.

    parse_default_msgs_per_s     email.message_from_bytes(policy=default) + get_body()
    parse_compat32_msgs_per_s    email.message_from_bytes(policy=compat32) + walk()
    parse_mailforum_msgs_per_s   mailforum.mail.parse.parse (compat32, single-part mail
                                 parsed as headers + body, everything a post stores)
    from_mailforum_strict_us     reading the From: mailbox as a DMARC validator does (parse._sender)
    from_getaddresses_decoded_us what it replaced: getaddresses() after decoding encoded-words
    from_stdlib_header_value_parser_us  email._header_value_parser.get_address_list, for scale
    refuse_depth_5000_ms, refuse_parts_100000_ms, refuse_rfc822_10000_ms
                                 hostile structure refused by the pre-parse scan (B34, B35, B37)
    poison_mix_normal_slowdown_pct
                                 L8: how much slower normal mail parses with 5% hostile mail mixed in
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import contextlib
import importlib.util
import sys
import time
from collections.abc import Callable
from email import message_from_bytes
from email._header_value_parser import get_address_list
from email.policy import compat32, default
from email.utils import getaddresses
from pathlib import Path

from mailforum.mail.parse import Unprocessable, _sender, decode_header_value, parse

HERE = Path(__file__).parent


def corpus(count: int, seed: int) -> list[bytes]:
    spec = importlib.util.spec_from_file_location("bench_threading", HERE / "threading.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_threading"] = module
    spec.loader.exec_module(module)
    gen = module.Generator(seed)
    messages = gen.threads(count)[:count]
    return [gen.render(m) for m in messages]


def with_default(raw: bytes) -> None:
    msg = message_from_bytes(raw, policy=default)
    for name in ("message-id", "from", "subject", "date", "references"):
        str(msg.get(name, ""))
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        body.get_content()


def with_compat32(raw: bytes) -> None:
    msg = message_from_bytes(raw, policy=compat32)
    for name in ("message-id", "from", "subject", "date", "references"):
        str(msg.get(name, ""))
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            part.get_payload(decode=True)
            break


def rate(fn: Callable[[bytes], object], raws: list[bytes]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for raw in raws:
            fn(raw)
        best = min(best, time.process_time() - started)
    return len(raws) / best


def from_us(read: Callable[[str], object], values: list[str]) -> float:
    """Microseconds (CPU) to read one From: value, best of three rounds."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for value in values:
            read(value)
        best = min(best, time.process_time() - started)
    return best / len(values) * 1e6


def from_values(raws: list[bytes]) -> list[str]:
    return [str(message_from_bytes(raw, policy=compat32).get("from", "")) for raw in raws]


def refuse_ms(raw: bytes) -> float:
    started = time.process_time()
    try:
        parse(raw)
    except Unprocessable:
        return (time.process_time() - started) * 1000
    raise SystemExit("hostile message was not refused")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    raws = corpus(args.messages, args.seed)
    print(f"messages: {len(raws)}")
    print(f"average_bytes: {sum(map(len, raws)) / len(raws):.0f}")
    print(f"parse_default_msgs_per_s: {rate(with_default, raws):.0f}")
    print(f"parse_compat32_msgs_per_s: {rate(with_compat32, raws):.0f}")
    print(f"parse_mailforum_msgs_per_s: {rate(parse, raws):.0f}")
    froms = from_values(raws)
    print(f"from_mailforum_strict_us: {from_us(lambda v: _sender([v]), froms):.1f}")
    replaced = from_us(lambda v: getaddresses([decode_header_value(v)]), froms)
    print(f"from_getaddresses_decoded_us: {replaced:.1f}")
    print(f"from_stdlib_header_value_parser_us: {from_us(get_address_list, froms):.1f}")
    head = b"From: a@example.com\r\nMessage-ID: <h@x>\r\n"
    deep = head + b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n) for n in range(5000)
    )
    parts = head + b'Content-Type: multipart/mixed; boundary="a"\r\n\r\n' + b"--a\r\n\r\nx\r\n" * 100_000
    rfc822 = head + b"Content-Type: message/rfc822\r\n\r\n" * 10_000 + b"\r\nbody"
    print(f"refuse_depth_5000_ms: {refuse_ms(deep):.1f}")
    print(f"refuse_parts_100000_ms: {refuse_ms(parts):.1f}")
    print(f"refuse_rfc822_10000_ms: {refuse_ms(rfc822):.1f}")
    # L8: 5% pathological messages mixed in; how much slower is the normal traffic?
    header = head + b"X-Big: " + b"h" * 300_000 + b"\r\n\r\nbody"
    hostile = [deep, parts, rfc822, header]
    mixed: list[bytes] = []
    for n, raw in enumerate(raws):
        mixed.append(raw)
        if n % 19 == 0:
            mixed.append(hostile[n % len(hostile)])

    def tolerant(raw: bytes) -> None:
        with contextlib.suppress(Unprocessable):
            parse(raw)

    clean = rate(tolerant, raws)
    poisoned = rate(tolerant, mixed) * len(raws) / len(mixed)  # normal messages per second
    print(f"poison_mix_hostile_share_pct: {100 * (len(mixed) - len(raws)) / len(mixed):.1f}")
    print(f"poison_mix_normal_slowdown_pct: {100 * (1 - poisoned / clean):.1f}")


if __name__ == "__main__":
    main()
