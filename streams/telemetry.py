"""Prometheus metrics: the one adapter for prometheus_client, used by the API and the worker.

A process owns one `Registry`. Latencies are real histograms (observed where they happen,
buckets fine enough near the targets to read a p99 from); everything a process already
counts or holds (counters in a `Counter`, queue depths, follower lags) is read when the
page is scraped, by a collector the process registers: `Families` groups its samples by
name into families with HELP and TYPE. `render()` is the standard text exposition.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "LAG_BUCKETS",
    "LATENCY_BUCKETS",
    "Families",
    "Histogram",
    "Registry",
    "samples",
]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus version reads
# Request latencies: fine from 0.25 ms to 50 ms, where decide's p50 and p99 live, then coarse.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
# Learning lags (reward accepted -> model): the freshness target is 1 s.
LAG_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
_NAME = re.compile(r"[^a-zA-Z0-9_]")
# No `_created` series: they would double the page, and dashboards do not read them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Families:
    """Samples by metric name, each name one family of one type and one HELP text."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def gauge(self, name: str, help: str, value: float, **labels: str) -> None:
        self._add(GaugeMetricFamily, name, help, value, labels)

    def counter(self, name: str, help: str, value: float, **labels: str) -> None:
        """`name` without `_total`: the exposition appends it."""
        self._add(CounterMetricFamily, name, help, value, labels)

    def counts(self, prefix: str, counts: Mapping[str, int], helps: Mapping[str, str]) -> None:
        """One counter per key of `counts` (`<prefix>_<key>_total`), HELP from `helps`;
        every key of `helps` is shown, at 0 until counted, so alerts on it have a series."""
        for key, value in sorted({**dict.fromkeys(helps, 0), **counts}.items()):
            name = f"{prefix}_{_NAME.sub('_', key)}"
            self.counter(name, helps.get(key, f"Count of {key.replace('_', ' ')}."), value)

    def _add(
        self,
        kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
        name: str,
        help: str,
        value: float,
        labels: Mapping[str, str],
    ) -> None:
        family = self._families.get(name)
        if family is None:
            family = kind(name, help, labels=sorted(labels))
            self._families[name] = family
        family.add_metric([labels[k] for k in sorted(labels)], value)

    def families(self) -> list[Metric]:
        return list(self._families.values())


class _Scraped(Collector):
    def __init__(self, collect: Callable[[Families], None]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        families = Families()
        self._collect(families)
        return families.families()


class Registry:
    """One process's metrics: its histograms and the collectors read at scrape time."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)

    def histogram(
        self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        return Histogram(name, help, labelnames=labels, buckets=buckets, registry=self._registry)

    def scraped(self, collect: Callable[[Families], None]) -> None:
        """Call `collect` on every scrape to add what the process holds now."""
        self._registry.register(_Scraped(collect))

    def render(self) -> bytes:
        return generate_latest(self._registry)

    def serve(self, host: str, port: int) -> int:
        """Serve `/metrics` from a daemon thread (for a process without a web server of its
        own); port 0 takes a free one. Returns the port."""
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr=host, registry=self._registry)
        _servers.append((server, thread))
        return int(server.server_address[1])


_servers: list[tuple[object, threading.Thread]] = []  # kept alive for the process's life


def samples(text: str, strict: bool = False) -> dict[str, float]:
    """A scraped page, read with Prometheus's own text parser: every sample as `name` or
    `name{k="v",...}` (labels sorted) -> value. `strict`: a family without its HELP or
    TYPE is a ValueError, as is text that does not parse."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if strict and (not family.documentation or family.type == "unknown"):
            raise ValueError(f"{family.name}: no HELP or no TYPE")
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out
