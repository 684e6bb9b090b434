"""The typed state shared between modules: outbox payloads and per-transaction caches."""

from sqlalchemy.orm import Session

from mailforum.db.payloads import digest_payload, notice_payload
from mailforum.db.txcache import TxCache


def test_a_digest_payload_reads_back_typed_from_json():
    stored = {"from": "3", "to": 9, "frequency": "daily", "label": "Thu 3 Dec"}
    assert digest_payload(stored) == {"from": 3, "to": 9, "frequency": "daily", "label": "Thu 3 Dec"}


def test_a_notice_payload_from_an_older_row_gets_its_defaults():
    read = notice_payload({"subject": "Your request", "text": "Done.", "in_reply_to": ""})
    assert read == {
        "template": "",
        "subject": "Your request",
        "text": "Done.",
        "html": "",
        "in_reply_to": None,
        "sender": "request",
        "reply_to": None,
    }


def test_a_transaction_cache_is_made_once_and_cleared():
    cache: TxCache[dict[str, int]] = TxCache("test.cache", dict)
    session = Session()
    assert cache.get(session) is None
    cache.setdefault(session)["a"] = 1
    assert cache.setdefault(session) == {"a": 1} and cache.get(session) == {"a": 1}
    cache.clear(session)
    assert cache.get(session) is None
    session.close()
