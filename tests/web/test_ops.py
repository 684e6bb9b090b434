"""/metrics (trusted addresses or a token), /healthz and /readyz over real HTTP."""

from __future__ import annotations

import re
from dataclasses import replace

from mailforum.config import MetricsConfig
from mailforum.core import api_tokens, lists
from mailforum.db.session import Database
from tests.helpers import free_ports, make_config, message
from tests.web.kit import WebThread, seed


def sample(text: str, name: str, labels: str = "") -> float:
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert found, f"no sample {name}{labels}"
    return float(found.group(1))


def test_metrics_show_queues_posts_and_requests_from_the_database(site, web) -> None:
    seed(site.config, site.db, [message("One", "<1@example.com>"), message("Two", "<2@example.com>")])
    with web.client() as http:
        assert http.get("/lists/dev").status_code == 200
        r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert sample(text, "mailforum_posts_total") == 2
    assert sample(text, "mailforum_spool_messages", '{state="failed"}') == 0
    assert sample(text, "mailforum_outbox_copies", '{state="pending"}') == 0
    assert sample(text, "mailforum_web_requests_total", '{kind="page",status="200"}') >= 1
    for name in (
        "mailforum_ingest_seconds_count",
        "mailforum_processing_seconds_count",
        "mailforum_copies_sent_total",
    ):
        assert re.search(rf"^{name} ", text, re.M), name


def test_metrics_are_404_to_untrusted_clients_without_an_unbound_token(site) -> None:
    port = free_ports(1)[0]
    config = replace(
        site.config, web=replace(site.config.web, port=port), metrics=MetricsConfig(trusted="10.0.0.0/8")
    )
    with site.db.session() as session:
        everywhere = api_tokens.create(session, "prom", "read")
        one_list = api_tokens.create(session, "devonly", "admin", lists.get_list(session, "dev"))
    running = WebThread(config, site.db)
    running.start()
    try:
        with running.client() as http:
            assert http.get("/metrics").status_code == 404
            assert http.get("/metrics", headers={"Authorization": f"Bearer {one_list}"}).status_code == 404
            assert (
                http.get(
                    "/metrics", headers={"Authorization": "Bearer mf_0000000000000000_nope-nope-nope-nope"}
                ).status_code
                == 404
            )
            ok = http.get("/metrics", headers={"Authorization": f"Bearer {everywhere}"})
            assert ok.status_code == 200 and "mailforum_posts_total" in ok.text
            assert http.get("/healthz").status_code == 200  # the probes are open to all
    finally:
        running.stop()


def test_readyz_is_503_while_the_database_is_unreachable_and_healthz_stays_200() -> None:
    config = make_config("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    db = Database(config.database.url, busy_timeout=1.0)
    running = WebThread(config, db)
    running.start()
    try:
        with running.client() as http:
            assert http.get("/healthz").status_code == 200
            r = http.get("/readyz")
            assert r.status_code == 503 and "unreachable" in r.text
    finally:
        running.stop()
        db.dispose()


def test_readyz_is_200_with_the_database_up(site, web) -> None:
    with web.client() as http:
        assert http.get("/readyz").status_code == 200
