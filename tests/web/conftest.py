"""Fixtures of the web archive tests: a site with small pages, the app on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailforum.config import WebConfig
from tests.helpers import Site, make_config
from tests.web.kit import Recorder, WebThread


@pytest.fixture
def site(db_url: str, tmp_path: Path) -> Iterator[Site]:
    base = make_config(db_url)
    web = replace(WebConfig(host="127.0.0.1", port=base.web.port), topics_per_page=3, posts_per_page=4)
    installation = Site(replace(base, web=replace(web, form_limit=3, form_window=600.0)), tmp_path)
    installation.create_list("dev", description="Developers talk here")
    yield installation
    installation.db.dispose()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def web(site: Site, recorder: Recorder) -> Iterator[WebThread]:
    running = WebThread(site.config, site.db, recorder)
    running.start()
    yield running
    running.stop()
