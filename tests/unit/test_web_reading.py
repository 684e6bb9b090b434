"""How a post's text reads (web.reading): quotes as people write them, patches and code, reflow."""

from __future__ import annotations

import pytest

from mailforum.web.reading import LONG_CODE, LONG_POST, SHORT_QUOTE, Block, read_body, reflow


def shape(blocks: tuple[Block, ...]) -> list[object]:
    """Blocks as nested (kind, who, open) tuples: quotes with their content's shape."""
    out: list[object] = []
    for b in blocks:
        if b.kind == "quote":
            out.append(("quote", b.who, b.open, shape(b.blocks)))
        else:
            out.append(b.kind)
    return out


def test_the_attribution_line_names_the_quote_and_nested_levels_nest() -> None:
    text = (
        "I agree.\n\nOn Mon, 1 Jan 2026, Bob Builder <b…@example.com> wrote:\n"
        "> can we fix it?\n> > yes\n\nDone."
    )
    blocks = read_body(text, parent_author="Parent")
    assert shape(blocks) == [
        "prose",
        ("quote", "Bob Builder", True, ["text", ("quote", "an earlier message", False, ["text"])]),
        "prose",
    ]
    assert blocks[1].lines == 2 and blocks[1].blocks[0].text == "can we fix it?"
    assert "wrote:" not in "".join(b.text for b in blocks)


def test_a_quote_without_attribution_names_the_parent_author() -> None:
    blocks = read_body("> earlier words\n\nmine", parent_author="Carol")
    assert blocks[0].kind == "quote" and blocks[0].who == "Carol"


def test_blank_lines_inside_a_quote_do_not_split_it() -> None:
    blocks = read_body("> one\n>\n> two\n\n> three\n\nanswer")
    assert [b.kind for b in blocks] == ["quote", "prose"]
    assert blocks[0].lines == 3 and blocks[0].open


def test_short_quotes_are_open_long_and_trailing_ones_folded_with_their_line_count() -> None:
    long = "\n".join(f"> line {n}" for n in range(SHORT_QUOTE + 1))
    blocks = read_body(f"> short\n\nfirst answer\n\n{long}\n\nsecond answer\n\n> trailing\n")
    quotes = [b for b in blocks if b.kind == "quote"]
    assert [(q.open, q.lines) for q in quotes] == [(True, 1), (False, SHORT_QUOTE + 1), (False, 1)]
    # Trailing means nothing but quotes and a signature follow.
    assert not read_body("answer\n\n> quoted\n-- \nsig")[1].open


def test_gmail_attribution_broken_over_two_lines_is_read_whole() -> None:
    text = "Yes.\n\nOn Thu, Nov 26, 2026 at 9:00 AM Ann Author <\na…@example.com> wrote:\n\n> hello\n\nmore"
    blocks = read_body(text, "Parent")
    assert shape(blocks) == ["prose", ("quote", "Ann Author", True, ["text"]), "prose"]
    assert "wrote" not in blocks[0].text


@pytest.mark.parametrize(
    "line, who",
    [
        ("Am 26.11.2026 um 10:00 schrieb Jörg Meier:", "Jörg Meier"),
        ("On Tue, Nov 26, 2026 at 10:00:00AM +0100, Ann wrote:", "Ann"),
        ("Le 26 nov. 2026 à 10:00, Zoé a écrit :", "Zoé"),
    ],
)
def test_attributions_in_other_shapes_and_languages(line: str, who: str) -> None:
    assert read_body(f"{line}\n> x\n\ny")[0].who == who


def test_initials_quoting_counts_when_the_same_initials_start_two_lines() -> None:
    blocks = read_body("BB> Agreed.\nBB> A question.\n\nAsk it.\nHTML> is not a quote\n", "Bob")
    assert shape(blocks) == [("quote", "Bob", True, ["text"]), "prose"]
    assert blocks[0].blocks[0].text == "Agreed.\nA question."
    assert "HTML> is not a quote" in blocks[1].text


def test_outlook_header_block_quotes_the_rest_named_after_its_from_line() -> None:
    text = (
        "Top-posted answer.\n\n-----Original Message-----\nFrom: Ivan Ivanov [mailto:i…@corp.example.com]\n"
        "Sent: Thursday, 26 November 2026 09:00\nTo: dev\nSubject: plan\n\nThe original text.\n> older\n"
    )
    blocks = read_body(text)
    assert shape(blocks) == [
        "prose",
        ("quote", "Ivan Ivanov", False, ["text", ("quote", "an earlier message", False, ["text"])]),
    ]
    assert "Sent:" not in repr(blocks)


def test_outlook_without_separator_and_german_outlook() -> None:
    plain = read_body(
        "Ok.\n\n________________________________\nFrom: Ann <a…@x.org>\nSent: Monday\nTo: dev\n\nOld."
    )
    assert shape(plain) == ["prose", ("quote", "Ann", False, ["text"])]
    german = read_body(
        "Gut.\n\n-----Ursprüngliche Nachricht-----\nVon: Ivan Ivanov\nGesendet: Donnerstag\n\nAlt."
    )
    assert shape(german) == ["prose", ("quote", "Ivan Ivanov", False, ["text"])]


def test_a_forwarded_message_is_labelled_as_one() -> None:
    text = (
        "FYI\n\n---------- Forwarded message ---------\nFrom: Zed <z…@x.org>\nDate: Mon\nSubject: s\n\nbody"
    )
    quote = read_body(text)[1]
    assert quote.kind == "quote" and quote.forward and quote.who == "Zed" and not quote.open


def test_an_mbox_escaped_from_line_is_text_not_a_quote() -> None:
    blocks = read_body("I came\n>From the north.\nAnd stayed.")
    assert [b.kind for b in blocks] == ["prose"] and "From the north." in blocks[0].text


def test_a_patch_is_code_with_its_diffstat_and_the_commit_message_is_prose() -> None:
    text = (
        "Fix the thing.\n\nSigned-off-by: Eve <e…@x.org>\n"
        "---\n a.c | 3 ++-\n 1 file changed, 2 insertions(+)\n\n"
        "diff --git a/a.c b/a.c\nindex 1..2 100644\n--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,4 @@\n int x;\n-int y;\n"
        "+int y = 1;\n\n int w;\n-- \n2.43.0\n"
    )
    blocks = read_body(text)
    assert [b.kind for b in blocks] == ["prose", "prose", "code", "code", "signature"]
    assert blocks[2].text.startswith("---\n a.c | 3 ++-")
    assert blocks[3].text.startswith("diff --git") and blocks[3].text.endswith(" int w;")


def test_indented_code_and_aligned_columns_are_code_prose_is_not() -> None:
    blocks = read_body(
        "See:\n\n    x = 1\n    y = 2\n\nname    size    date\nfoo     12      today\n\nplain words"
    )
    assert [b.kind for b in blocks] == ["prose", "code", "code", "prose"]
    assert blocks[1].text == "    x = 1\n    y = 2"


def test_quoted_patches_are_code_inside_the_quote() -> None:
    text = "On Mon, Ann wrote:\n> @@ -1 +1 @@\n> -old\n> +new\n\nLooks good."
    quote = read_body(text)[0]
    assert [b.kind for b in quote.blocks] == ["code"]


def test_reflow_joins_what_the_editor_broke_and_keeps_what_the_writer_broke() -> None:
    para = [
        "This paragraph is hard-wrapped at 72 columns the way mutt and Emacs",
        "write it, so on a phone every line breaks again in the middle of the",
        "screen.",
    ]
    assert reflow(para) == " ".join(para)
    assert reflow(["Thanks,", "Ann"]) == "Thanks,\nAnn"
    listed = ["These are the things we need to decide before the release, in order:", "- one", "- two"]
    assert reflow(listed) == "\n".join(listed)
    # A short line in a wrapped paragraph ends its sentence there: the next line stays apart.
    assert reflow([para[0], "short.", para[1]]) == f"{para[0]} short.\n{para[1]}"


def test_quoted_prose_keeps_its_lines() -> None:
    lines = (
        "> This paragraph is hard-wrapped at 72 columns the way mutt and Emacs\n> write it, so on a phone."
    )
    assert read_body(lines + "\n\nok")[0].blocks[0].text.count("\n") == 1


def test_signature_and_list_footer_are_set_apart() -> None:
    assert [b.kind for b in read_body("Text\n-- \nAnn\nhttps://ann.example")] == ["prose", "signature"]
    footer = read_body(
        "Text\n_______________________________________________\nDev mailing list\nhttps://x/listinfo"
    )
    assert [b.kind for b in footer] == ["prose", "signature"]


@pytest.mark.parametrize("text", ["", "   \n\n  ", "\n-- \n"])
def test_empty_and_whitespace_bodies_give_no_blocks(text: str) -> None:
    assert read_body(text) == ()


def test_deep_quoting_is_bounded() -> None:
    blocks = read_body(">" * 500 + " deep\n\nok")
    assert blocks[-1].kind == "prose"


def test_gnus_supercite_attribution_and_indented_lowercase_initials() -> None:
    text = (
        '>>>>> "f" == fork list <f…@example.com> writes:\n\n'
        "    f> Free trade and free markets\n    f> lift societies\n\nChina?"
    )
    blocks = read_body(text, "Parent")
    assert shape(blocks) == [("quote", "fork list", True, ["text"]), "prose"]


@pytest.mark.parametrize(
    "line, who",
    [
        ("f…@xent.com On Behalf Of Adam wrote:", "Adam"),
        ("z…@example.com (Justin Mason) writes:", "Justin Mason"),
        ("--- Tom wrote:", "Tom"),
        ("On Nov 16 Mark Brown wrote:", "Mark Brown"),
        ("At 9:34 PM -0700 on 9/20/02, Mr. FoRK wrote:", "Mr. FoRK"),
    ],
)
def test_names_are_cleaned_of_addresses_dates_and_outlook_delegation(line: str, who: str) -> None:
    assert read_body(f"{line}\n> x\n\ny")[0].who == who


def test_a_very_long_post_folds_its_rest() -> None:
    paragraphs = "\n\n".join(f"Paragraph {n} of a pasted document." for n in range(400))
    blocks = read_body("Look at this:\n\n" + paragraphs + "\n-- \nsig")
    assert blocks[-1].kind == "more" and blocks[-1].lines > 100
    assert LONG_POST <= sum(1 for b in blocks[:-1]) <= LONG_POST + 1
    assert blocks[-1].blocks[-1].kind == "signature"
    short = read_body(paragraphs.split("\n\n", 1)[0])
    assert [b.kind for b in short] == ["prose"]


def test_a_long_patch_is_folded_with_its_line_count_a_short_one_is_open() -> None:
    hunk = "".join(f"+line {n};\n" for n in range(LONG_CODE + 5))
    long = read_body(f"Commit message.\n\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1,40 @@\n{hunk}")
    assert [(b.kind, b.who, b.open) for b in long] == [("prose", "", False), ("code", "patch", False)]
    assert long[1].lines == LONG_CODE + 5 + 4
    short = read_body("See:\n\n    x = 1\n    y = 2\n")
    assert (short[1].who, short[1].open, short[1].lines) == ("code", True, 2)


@pytest.mark.parametrize(
    "text",
    [
        "\n\n".join(["para"] * 20_000),
        "> a\n" + "\n" * 100_000 + "x",
        ("> " * 11 + "deep\n") * 20_000,
        "|" * 200_000,
        "On " + "x, " * 50_000 + "wrote:\n> q",
    ],
    ids=["many-paragraphs", "blank-run", "deep-quotes", "one-long-line", "long-attribution"],
)
def test_hostile_bodies_read_in_linear_time(text: str) -> None:
    """Big bodies of one shape each: the reader's work grows with the text, not its square
    (each would take minutes if it did)."""
    assert read_body.__wrapped__(text)  # type: ignore[attr-defined]


def test_hunk_lines_quoted_without_their_header_are_code_a_dash_list_is_not() -> None:
    review = read_body("On Mon, Ann wrote:\n> +const char *\n> +get_flags (message_t *message)\n\nWhy const?")
    assert [b.kind for b in review[0].blocks] == ["code"]
    listed = read_body("Options:\n\n- one\n- two")
    assert [b.kind for b in listed] == ["prose", "prose"]
