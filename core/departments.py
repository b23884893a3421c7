"""The departments Switchboard serves, plus the general fallback."""

from typing import Final, Literal

DEPARTMENTS: Final = ("hr", "finance", "healthcare", "marketing", "sales")
BASE: Final = "base"
# What a route may resolve to: one department, or the general base model.
TARGETS: Final = (*DEPARTMENTS, BASE)

Department = Literal["hr", "finance", "healthcare", "marketing", "sales"]
