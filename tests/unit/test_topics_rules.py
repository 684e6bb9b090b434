"""The small rules of topics (issue 19): which words tag a topic, where tags go in a copy's
subject, and how a moderator's decisions are made again on a rethread's result."""

from __future__ import annotations

import pytest

from mailforum.core.rethread import ManualDecision, Node, Threading, replay_decisions
from mailforum.core.topics import named_tags, tag_name
from mailforum.errors import InvalidInput
from mailforum.mail.compose import tags_in_subject

VOCABULARY = ["agile", "strategy", "risk", "c-plus"]


@pytest.mark.parametrize(
    ("subject", "body", "want"),
    [
        ("[agile] Sprint length?", "How long?", ["agile"]),
        ("[Agile] [risk] Both", "", ["agile", "risk"]),
        ("Hiring", "#strategy\nWe need people.", ["strategy"]),
        ("Hiring", "\n\n  #Strategy #c-plus and more", ["strategy", "c-plus"]),
        ("[nosuch] Unknown", "#nosuch", []),  # only words of the vocabulary
        ("Plain", "First line\n#agile on the second line", []),  # only the first body line
        ("Plain", "issue#agile and a.b#risk", []),  # not a word of its own
        ("Re: [dev] [agile] x", "", ["agile"]),
    ],
)
def test_named_tags(subject: str, body: str, want: list[str]) -> None:
    assert named_tags(subject, body, VOCABULARY) == want


@pytest.mark.parametrize("bad", ["", "#", "-x", "a b", "é", "x" * 65, "a/b"])
def test_tag_names_are_checked(bad: str) -> None:
    with pytest.raises(InvalidInput):
        tag_name(bad)


def test_tag_name_normalises() -> None:
    assert tag_name(" #Agile ") == "agile"


@pytest.mark.parametrize(
    ("subject", "tags", "want"),
    [
        ("[dev] Roadmap", ["strategy"], "[dev] [strategy] Roadmap"),
        ("Re: [dev] Roadmap", ["strategy", "risk"], "Re: [dev] [strategy] [risk] Roadmap"),
        ("[dev] [agile] Sprint", ["agile"], "[dev] [agile] Sprint"),  # shown once
        ("Re: Roadmap", ["strategy"], "Re: [strategy] Roadmap"),  # a list without a subject tag
        ("[dev] Roadmap", [], "[dev] Roadmap"),
    ],
)
def test_tags_in_subject(subject: str, tags: list[str], want: str) -> None:
    assert tags_in_subject(subject, "[dev]" if "[dev]" in subject else "", tags) == want


def _threading() -> Threading:
    t = Threading()
    t.nodes = {
        "big": Node(1, None),
        "r1": Node(1, "big"),
        "r2": Node(1, "r1"),
        "r3": Node(1, "big"),
        "lunch": Node(2, None),
        "road": Node(3, None),
    }
    t.subjects = {1: "Big", 2: "Lunch", 3: "Roadmap"}
    return t


def test_a_split_a_merge_and_a_retitle_are_made_again() -> None:
    t = _threading()
    replay_decisions(
        t,
        [
            ManualDecision("split", "r1", None, "Side question"),
            ManualDecision("merge", "lunch", "road", None),
            ManualDecision("retitle", "road", None, "Roadmap and lunch"),
            ManualDecision("split", "gone", None, "A message the replay does not hold"),
        ],
    )
    n = t.nodes
    assert n["r1"].topic == n["r2"].topic != n["big"].topic == n["r3"].topic
    assert n["r1"].parent is None and n["r2"].parent == "r1"
    assert t.subjects[n["r1"].topic] == "Side question" and n["r1"].topic in t.manual
    assert n["lunch"].topic == n["road"].topic == 3 and 2 not in t.subjects
    assert t.subjects[3] == "Roadmap and lunch"
