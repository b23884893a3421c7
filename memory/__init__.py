"""Windowed conversation memory: the interface and its backends."""

from memory.base import ConversationMemory
from memory.in_process import InProcessMemory

__all__ = ["ConversationMemory", "InProcessMemory"]
