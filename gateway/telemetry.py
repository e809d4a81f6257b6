"""The gateway's own metrics in the Prometheus text format, written by hand to need no extra dependency.

Request counts are labelled by route template (``/api/v1/actions/{action_id}/approve``), never by
the raw path, so a scanner cannot blow up the number of series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from gateway.state import LiveState


class RequestCounter:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, int]] = Counter()

    def count(self, method: str, path: str, status: int) -> None:
        self.counts[(method, path, status)] += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str | int) -> str:
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items()) + "}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *(f"{name}{lab} {val:g}" for lab, val in samples)]


def render(requests: RequestCounter, state: LiveState, kafka_reachable: bool) -> str:
    lines: list[str] = []
    lines += _family(
        "aiops_gateway_http_requests_total",
        "counter",
        "HTTP requests answered, by method, route and status.",
        ((_labels(method=m, path=p, status=s), n) for (m, p, s), n in sorted(requests.counts.items())),
    )
    lines += _family(
        "aiops_gateway_events_total",
        "counter",
        "Kafka records the gateway has read, by topic.",
        ((_labels(topic=t), n) for t, n in sorted(state.events_seen.items())),
    )
    lines += _family(
        "aiops_gateway_decode_errors_total",
        "counter",
        "Kafka records skipped because they did not match their schema, by topic.",
        ((_labels(topic=t), n) for t, n in sorted(state.decode_errors.items())),
    )
    lines += _family(
        "aiops_gateway_kafka_reachable",
        "gauge",
        "1 if the last probe of Kafka succeeded.",
        [("", int(kafka_reachable))],
    )
    lines += _family("aiops_gateway_services", "gauge", "Services with a known health.", [("", len(state.services))])
    lines += _family(
        "aiops_gateway_live_clients", "gauge", "Clients following /api/v1/stream.", [("", state.subscriber_count)]
    )
    return "\n".join(lines) + "\n"
