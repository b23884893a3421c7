"""Intent routing: which department answers a message."""

from router.base import Router
from router.commands import CommandRouter, FallbackRouter, parse_command

__all__ = ["CommandRouter", "FallbackRouter", "Router", "parse_command"]
