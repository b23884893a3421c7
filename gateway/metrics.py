"""Prometheus metrics for the pipeline, in a registry per app instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# Replies take seconds on a CPU; buckets reach well past a minute.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "switchboard_requests",
            "Messages handled, by answering department and outcome.",
            ["department", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "switchboard_reply_seconds",
            "Time from message to complete reply.",
            ["department"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "switchboard_first_token_seconds",
            "Time from message to the first generated token (routing, retrieval, queueing and prefill).",
            ["department"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "switchboard_generated_tokens",
            "Tokens generated, by department.",
            ["department"],
            registry=self.registry,
        )

    def observe(self, department: str, outcome: str, seconds: float, tokens: int = 0) -> None:
        self.requests.labels(department, outcome).inc()
        self.latency.labels(department).observe(seconds)
        if tokens:
            self.tokens.labels(department).inc(tokens)

    def observe_first_token(self, department: str, seconds: float) -> None:
        self.first_token.labels(department).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
