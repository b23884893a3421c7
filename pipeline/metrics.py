"""What the pipeline reports about each reply; gateway/metrics.py records it in Prometheus."""

from __future__ import annotations

from typing import Protocol


class MetricsSink(Protocol):
    def observe(self, department: str, outcome: str, seconds: float, tokens: int = 0) -> None:
        """One finished message: its outcome ("ok", "error", "command"), time and tokens generated."""
        ...

    def observe_first_token(self, department: str, seconds: float) -> None:
        """Time from message to its first generated token."""
        ...
