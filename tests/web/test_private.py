"""RELIABILITY S15: every read surface of a private list answers 404 to anonymous readers.

The routes come from the router itself, so a route added later is covered (or the
test fails because it cannot fill in a new path parameter).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sqlalchemy import func, select, update
from starlette.routing import Route

from mailforum.core import archive, lists, topics
from mailforum.db.models import MailingList, Post, Visibility, utcnow
from tests.helpers import message
from tests.web.kit import seed

ATTACHED = (
    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B",
    "--B\nContent-Type: text/plain\n\nsecret text\n--B\nContent-Type: application/pdf\n"
    "Content-Disposition: attachment; filename=plan.pdf\n\n%PDF-1.4\n--B--\n",
)


def fill(path: str, values: dict[str, object]) -> str:
    def one(found: re.Match[str]) -> str:
        name = found.group(1)
        assert name in values, f"route {path} has a parameter {name!r} this test does not know: add it"
        return str(values[name])

    return re.sub(r"\{(\w+)(?::\w+)?\}", one, path)


def private_values(site, message_id: str = "<s1@example.com>") -> dict[str, object]:
    """Path parameters that name the private list's real topic, post and attachment."""
    with site.db.read_session() as session:
        post = session.scalars(select(Post).where(Post.message_id == message_id)).one()
    return {
        "list": "secret",
        "topic": post.topic_id,
        "post": post.id,
        "author": post.id,
        "index": 0,
        "filename": "plan.pdf",
        "year": f"{post.received_at:%Y}",
        "month": f"{post.received_at:%m}",
        "token": "1-2-3-notavalidtoken",
        "spool": 1,
        "key": "web.0123456789abcdef01234567",
        "address": "ann@example.com",
        "id": post.id,
        "rest": "anything",
        "tag": "plans",
        "template": "notification/post.txt.j2",
    }


def sweep(web, values: dict[str, object]) -> int:
    """Every route from the router, every method: 404 for the private list, no leak anywhere."""
    routes = [r for r in web.app.routes if isinstance(r, Route)]
    assert len(routes) >= 14
    checked = 0
    with web.client() as http:
        for route in routes:
            url = fill(route.path, values)
            for method in sorted(route.methods or ()):
                response = http.request(
                    method, url, data={"address": "a@example.com"} if method == "POST" else None
                )
                if "{list}" in route.path:
                    # The JSON API answers a request without a token 401 (or 405 for a method it
                    # does not have) whatever the list: that tells nothing about the list either.
                    want = (401, 405) if route.path.startswith("/api/") else (404,)
                    assert response.status_code in want, f"{method} {url} answered {response.status_code}"
                    checked += 1
                body = response.text if "text" in response.headers.get("content-type", "") else ""
                for leak in ("Covert plans", "secret text", "hush", "/lists/secret"):
                    assert leak not in body, f"{method} {url} shows {leak!r}"
    return checked


def covert_messages() -> list[bytes]:
    return [
        message("[secret] Covert plans", "<s1@example.com>", body=ATTACHED[1], extra=ATTACHED[0]),
        message("Re: Covert plans", "<s2@example.com>", extra="In-Reply-To: <s1@example.com>"),
    ]


def test_every_route_hides_a_private_list(site, web) -> None:
    site.create_list("secret", description="hush", visibility=Visibility.PRIVATE)
    with site.db.session() as session:  # a tag page, feed and filter answer 404 too (issue 19)
        topics.add_tags(session, lists.get_list(session, "secret"), ["plans"], utcnow())
    seed(site.config, site.db, covert_messages(), list_name="secret")
    values = private_values(site)
    assert sweep(web, values) >= 15
    routes = [r for r in web.app.routes if isinstance(r, Route)]
    # The same URLs answer once the list is public: the 404s above are about privacy, not typos.
    with site.db.session() as session:
        session.execute(update(MailingList).where(MailingList.name == "secret").values(visibility="public"))
    with web.client() as http:
        for route in routes:
            # (Not the owner pages, the moderators' tools and the API: they are never open to an
            # anonymous reader.)
            if (
                "{list}" in route.path
                and "GET" in (route.methods or ())
                and not route.path.startswith(("/admin", "/api/"))
                and not route.path.endswith("/moderate")
            ):
                url = fill(route.path, values)
                answer = http.get(url)
                # the members' pages (post, settings) send an anonymous reader to sign in
                signin = answer.status_code == 303 and "/signin" in answer.headers["location"]
                assert answer.status_code in (200, 302) or signin, url


def test_a_private_list_stays_hidden_while_its_archive_is_imported(site, web) -> None:
    """S15 (HyperKitty CVE-2021-33038: a list was public while its archive was imported): the
    sweep runs in the middle of ``import-mbox``'s work, with part of the archive committed."""
    site.create_list("secret", description="hush", visibility=Visibility.PRIVATE)
    swept: list[int] = []

    def archive_with_a_sweep_inside() -> Iterator[bytes]:
        yield from covert_messages()
        for n in range(3, 40):
            if n == 20:  # batches of 5: the first ones are committed by now, the import goes on
                with site.db.read_session() as session:
                    stored = session.scalar(select(func.count()).select_from(Post))
                assert stored >= 10
                swept.append(sweep(web, private_values(site)))
            yield message("Re: Covert plans", f"<s{n}@example.com>", extra="In-Reply-To: <s1@example.com>")

    with site.db.read_session() as session:
        mlist = lists.get_list(session, "secret")
    report = archive.import_messages(
        site.db, site.config, mlist, archive_with_a_sweep_inside(), batch=5, parallel=False
    )
    assert report.failed == 0 and swept and swept[0] >= 15
    assert sweep(web, private_values(site)) >= 15  # and after it
