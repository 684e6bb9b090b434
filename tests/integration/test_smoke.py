from tests.helpers import DOMAIN, message, send, wait_for


def test_post_over_smtp_and_reply_over_lmtp_are_stored_in_one_topic(site, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    send(site.config, message(message_id="<a@example.com>"))
    send(
        site.config,
        message("Re: Hello", "<b@example.com>", extra="In-Reply-To: <a@example.com>"),
        [f"dev@{DOMAIN}"],
        lmtp=True,
    )
    posts = wait_for(lambda: (p := site.posts_by_id()) and len(p) == 2 and p)
    assert posts["<b@example.com>"]["parent_message_id"] == "<a@example.com>"
    assert posts["<b@example.com>"]["topic_id"] == posts["<a@example.com>"]["topic_id"]
