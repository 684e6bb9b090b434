"""RELIABILITY S15: every read surface of a private list answers 404 to anonymous readers.

The routes come from the router itself, so a route added later is covered (or the
test fails because it cannot fill in a new path parameter).
"""

from __future__ import annotations

import re

from sqlalchemy import select, update
from starlette.routing import Route

from mailforum.db.models import MailingList, Post, Visibility
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


def test_every_route_hides_a_private_list(site, web) -> None:
    site.create_list("secret", description="hush", visibility=Visibility.PRIVATE)
    seed(
        site.config,
        site.db,
        [
            message("[secret] Covert plans", "<s1@example.com>", body=ATTACHED[1], extra=ATTACHED[0]),
            message("Re: Covert plans", "<s2@example.com>", extra="In-Reply-To: <s1@example.com>"),
        ],
        list_name="secret",
    )
    with site.db.read_session() as session:
        post = session.scalars(select(Post).where(Post.message_id == "<s1@example.com>")).one()
    values = {
        "list": "secret",
        "topic": post.topic_id,
        "post": post.id,
        "index": 0,
        "filename": "plan.pdf",
        "year": f"{post.received_at:%Y}",
        "month": f"{post.received_at:%m}",
    }
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
                    assert response.status_code == 404, f"{method} {url} answered {response.status_code}"
                    checked += 1
                body = response.text if "text" in response.headers.get("content-type", "") else ""
                for leak in ("Covert plans", "secret text", "hush", "/lists/secret"):
                    assert leak not in body, f"{method} {url} shows {leak!r}"
    assert checked >= 15
    # The same URLs answer once the list is public: the 404s above are about privacy, not typos.
    with site.db.session() as session:
        session.execute(update(MailingList).where(MailingList.name == "secret").values(visibility="public"))
    with web.client() as http:
        for route in routes:
            if "{list}" in route.path and "GET" in (route.methods or ()):
                url = fill(route.path, values)
                assert http.get(url).status_code in (200, 302), url
