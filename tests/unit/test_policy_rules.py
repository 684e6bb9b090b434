"""The posting policy is one table: every hold reason of a post is a named rule in it."""

from __future__ import annotations

import pytest

from mailforum.config import from_mapping
from mailforum.core.policy import MESSAGE_ID_REUSED, RULES, Action, Decision, PolicyContext, decide
from mailforum.db.models import MailingList, PostingPolicy
from mailforum.mail.parse import parse

RAW = b"From: ann@example.com\r\nTo: dev@lists.example.org\r\nSubject: hi\r\nMessage-ID: <m1@x>\r\n\r\nhi\r\n"


def context(policy: PostingPolicy = PostingPolicy.OPEN, **facts: bool) -> PolicyContext:
    mlist = MailingList(name="dev", posting_policy=policy.value, moderate_first_post=False)
    config = from_mapping({"site": {"domain": "lists.example.org"}})
    return PolicyContext(mlist, parse(RAW), RAW, "ann@example.com", None, config, **facts)


def test_the_table_names_every_hold_reason():
    assert {"reply-token", "message-id-reused"} <= {rule.name for rule in RULES}


@pytest.mark.parametrize(
    ("facts", "rule"),
    [({"token_for_another": True}, "reply-token"), ({"message_id_taken": True}, "message-id-reused")],
)
def test_a_late_rule_holds_a_message_every_other_rule_let_through(facts, rule):
    assert decide(context(**facts)).rule == rule
    # Another rule that fires first keeps its reason.
    assert decide(context(PostingPolicy.MODERATED, **facts)).rule == "moderated"


def test_the_message_id_rule_asked_alone():
    assert decide(context(message_id_taken=True), (MESSAGE_ID_REUSED,)).action is Action.HOLD
    assert decide(context(), (MESSAGE_ID_REUSED,)) == Decision(Action.ACCEPT)
