"""Handbook knowledge: facts, a retrieval index per department, and the "not covered" reply."""

from knowledge.base import Knowledge
from knowledge.handbook import Fact, Handbook, parse_handbook, read_handbook
from knowledge.index import FactIndex
from knowledge.library import HandbookLibrary

__all__ = ["Fact", "FactIndex", "Handbook", "HandbookLibrary", "Knowledge", "parse_handbook", "read_handbook"]
