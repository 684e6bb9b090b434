"""docs/grafana-dashboard.json: valid JSON whose queries name only metrics /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mailforum import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
FROM_DATABASE = {
    "mailforum_spool_messages",
    "mailforum_outbox_copies",
    "mailforum_posts_total",
    "mailforum_posts_by_status",
    "mailforum_members",
    "mailforum_members_delivery_disabled",
}


def test_every_metric_the_dashboard_queries_exists() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    named = {m for e in exprs for m in re.findall(r"\b(mailforum_[a-z_]+)", e)}
    exposed = set(FROM_DATABASE)
    for family in metrics.REGISTRY.collect():
        if family.name.startswith("mailforum_"):
            exposed.update(sample.name for sample in family.samples)
            exposed.add(family.name + ("_total" if family.type == "counter" else ""))
            if family.type == "histogram":  # a labelled one has no samples before its first observation
                exposed.update(family.name + end for end in ("_bucket", "_count", "_sum"))
    assert named and named <= exposed, named - exposed
