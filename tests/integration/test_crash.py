"""kill -9 and SIGTERM: every acknowledged message is stored exactly once (RELIABILITY I1, F1–F3, F16).

These run `mailforum serve` as a real process. The named crash points (H3) make the
server SIGKILL itself at an exact place: after the spool commit but before the 250
is written, and after a post is inserted but before its transaction commits.
"""

from __future__ import annotations

import os
import signal
import smtplib
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from mailforum.db.models import Post, SpoolEntry
from tests.helpers import DOMAIN, RawClient, message, wait_for

LIST = f"dev@{DOMAIN}"
pytestmark = pytest.mark.slow


def post_ids(site) -> Counter[str]:
    with site.db.read_session() as session:
        return Counter(session.scalars(select(Post.message_id).where(Post.status != "placeholder")))


def stop(proc, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(30)


def test_kill_9_mid_burst_loses_nothing_and_stores_nothing_twice(site):
    site.create_list("dev")
    site.add_members("dev", *(f"w{t}@example.com" for t in range(4)))
    proc = site.popen_server()
    acked: list[str] = []
    lock = threading.Lock()
    halt = threading.Event()

    def worker(t: int) -> None:
        i = 0
        while not halt.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", site.config.smtp.port, timeout=10) as client:
                    while not halt.is_set():
                        mid = f"<k{t}-{i}@example.com>"
                        client.sendmail(
                            f"w{t}@example.com", [LIST], message(f"burst {t} {i}", mid, f"w{t}@example.com")
                        )
                        with lock:
                            acked.append(mid)
                        i += 1
            except (OSError, smtplib.SMTPException):
                i += 1
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 60, timeout=60)
    stop(proc, signal.SIGKILL)
    halt.set()
    for t in threads:
        t.join()
    proc = site.popen_server()
    try:
        ids = wait_for(lambda: (c := post_ids(site)) and set(acked) <= set(c) and c, timeout=60)
        assert max(ids.values()) == 1
    finally:
        stop(proc)


def test_crash_between_commit_and_250_then_client_retry_gives_one_post(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    proc = site.popen_server(env={"MAILFORUM_CRASH_AT": "before_250_write:1"})
    raw = message(message_id="<window@example.com>")
    with (
        pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)),
        smtplib.SMTP("127.0.0.1", site.config.smtp.port, timeout=10) as client,
    ):
        client.sendmail("ann@example.com", [LIST], raw)
    proc.wait(10)
    proc = site.popen_server()
    try:
        # The client never saw a 250, so it sends again: RFC 5321 §6.1's duplicate window.
        with smtplib.SMTP("127.0.0.1", site.config.smtp.port, timeout=10) as client:
            client.sendmail("ann@example.com", [LIST], raw)
        wait_for(lambda: post_ids(site)["<window@example.com>"] == 1)
        with site.db.read_session() as session:
            assert session.scalar(select(func.count()).select_from(SpoolEntry)) == 2
            assert session.scalar(select(func.count()).select_from(Post)) == 1
    finally:
        stop(proc)


def test_crash_during_processing_is_reprocessed_after_restart(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    proc = site.popen_server(env={"MAILFORUM_CRASH_AT": "after_post_insert:2"})
    sent = []
    try:
        with smtplib.SMTP("127.0.0.1", site.config.smtp.port, timeout=10) as client:
            for i in range(5):
                mid = f"<p{i}@example.com>"
                client.sendmail("ann@example.com", [LIST], message(f"post {i}", mid))
                sent.append(mid)
    except (OSError, smtplib.SMTPException):
        pass
    proc.wait(20)
    assert proc.returncode == -signal.SIGKILL
    proc = site.popen_server()
    try:
        ids = wait_for(lambda: (c := post_ids(site)) and set(sent) <= set(c) and c, timeout=60)
        assert all(ids[m] == 1 for m in sent)
    finally:
        stop(proc)


def test_sigterm_refuses_new_sessions_and_finishes_in_flight_data(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    proc = site.popen_server()
    client = RawClient(site.config.smtp.port)
    client.cmd("EHLO x")
    client.cmd("MAIL FROM:<ann@example.com>")
    client.cmd(f"RCPT TO:<{LIST}>")
    assert client.cmd("DATA").startswith("354")
    client.send(message(message_id="<inflight@example.com>")[:40])
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    late = RawClient(site.config.smtp.port)
    assert late.banner.startswith("421 4.3.2")
    client.send(message(message_id="<inflight@example.com>")[40:] + b".\r\n")
    assert client.reply().startswith("250")
    proc.wait(30)
    assert proc.returncode == 0
    proc = site.popen_server()
    try:
        wait_for(lambda: post_ids(site)["<inflight@example.com>"] == 1)
    finally:
        stop(proc)
