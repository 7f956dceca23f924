"""A federation of sites (``data.dataset = "sites"``): ask every SuperNode what data it holds,
take in those that fit, refuse the others with a reason, and never sample a refused one.
"""

from __future__ import annotations

import time
from logging import INFO, WARNING

from flwr.app import Message
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid
from flwr.supercore import log

from fedcore.config import ExperimentConfig
from fedcore.protocol import SiteQuery, decode_site_report, site_query
from fedcore.sitespec import SiteFederation, SiteReport, parse_floats, parse_shape, resolve
from strategies import FederationError


def ask_sites(grid: Grid, cfg: ExperimentConfig, poll: float = 1.0) -> list[SiteReport]:
    """Every connected SuperNode's report, once ``data.num_sites`` have answered or
    ``server.connect_timeout`` has passed (with at least one answer)."""
    d, timeout = cfg.data, cfg.server.connect_timeout
    deadline = time.monotonic() + timeout
    query = SiteQuery(not d.mean, cfg.section("zdas").share_label_counts, d.input_shape,
                      d.num_classes)  # fmt: skip
    reports: dict[int, SiteReport] = {}
    while len(reports) < d.num_sites:
        new = [n for n in grid.get_node_ids() if n not in reports]
        asks = [Message(site_query(query), dst_node_id=n, message_type=MessageType.QUERY)
                for n in new]  # fmt: skip
        for reply in grid.send_and_receive(asks, timeout=timeout) if asks else []:
            node = reply.metadata.src_node_id
            if reply.has_error():
                reason = reply.error.reason or "no reason given"
                reports[node] = SiteReport(node, f"node {node}", {}, reason)
            else:
                name, summary, refusal = decode_site_report(reply.content)
                reports[node] = SiteReport(node, name or f"node {node}", summary, refusal)
        if len(reports) >= d.num_sites:
            break
        if time.monotonic() > deadline:
            if not reports:
                raise FederationError(f"no site connected within {timeout:.0f}s")
            log(WARNING, "only %d of %d sites answered within %.0fs (server.connect_timeout)",
                len(reports), d.num_sites, timeout)  # fmt: skip
            break
        log(INFO, "Waiting for sites: %d of %d answered", len(reports), d.num_sites)
        time.sleep(poll)
    return list(reports.values())


def site_federation(grid: Grid, cfg: ExperimentConfig) -> SiteFederation:
    """The sites that fit the run (and, logged, those refused and why)."""
    d = cfg.data
    try:
        fed = resolve(
            ask_sites(grid, cfg),
            parse_shape(d.input_shape),
            d.num_classes,
            parse_floats(d.mean),
            parse_floats(d.std),
        )
    except ValueError as e:
        raise FederationError(str(e)) from e
    for node, reason in sorted(fed.refused.items()):
        log(WARNING, "refused node %d: %s", node, reason)
    log(INFO, "sites taken in: %s", ", ".join(fed.names))
    return fed
