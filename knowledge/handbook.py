"""A department handbook read into facts: the markdown format every handbook follows.

    # HR handbook — Sahyadri Home Appliances        <- the department's display name
    **Helpdesk:** the HR helpdesk on extension 4420  <- optional: departments.yaml's `helpdesk` comes first
    ## Leave                                        <- section of the facts below it
    - **HR-03** Casual leave (CL) is 8 days ...     <- one fact
      an indented line continues the fact above
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FACT_LINE = re.compile(r"^- \*\*([A-Z]+-\d{2,3})\*\*\s+(\S.*)$")
# Starts like a fact bullet but misses the exact form; reported so a typo never drops a fact silently.
NEAR_FACT_LINE = re.compile(r"^\s*[-*+]\s*\*\*\s*[A-Za-z]{2,5}\s*-?\s*\d")
HELPDESK_LINE = re.compile(r"^\*\*Helpdesk:\*\*\s*(\S.*?)\.?\s*$")
_TITLE = re.compile(r"^#\s+(.+?)\s+handbook\b", re.IGNORECASE)


@dataclass(frozen=True)
class Fact:
    id: str
    text: str
    line: int
    section: str = ""


@dataclass(frozen=True)
class Handbook:
    """What a handbook holds; `suspicious` lists lines that look like broken fact bullets."""

    name: str  # "HR", from the title; "" when the title does not say
    helpdesk: str  # "" when the handbook names none
    facts: tuple[Fact, ...]
    suspicious: tuple[int, ...] = ()

    @property
    def not_covered(self) -> str:
        """The reply for a question none of the facts answers."""
        return not_covered_reply(self.name, self.helpdesk)


# Every "not covered" reply holds this phrase; evaluation counts an abstention by it.
NOT_COVERED_PHRASE = "does not cover"


def not_covered_reply(name: str, helpdesk: str) -> str:
    handbook = f"The {name} handbook" if name else "The handbook"
    ask = f" Please ask {helpdesk}." if helpdesk else ""
    return f"{handbook} {NOT_COVERED_PHRASE} that.{ask}"


def parse_handbook(text: str) -> Handbook:
    name = helpdesk = section = ""
    facts: list[Fact] = []
    suspicious: list[int] = []
    continues_fact = False
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if match := FACT_LINE.match(line):
            facts.append(Fact(match[1], match[2].strip(), number, section))
            continues_fact = True
            continue
        if continues_fact and line[:1].isspace() and line.strip() and line.strip()[0] not in "-*+":
            last = facts[-1]  # an indented wrapped line still belongs to the bullet above it
            facts[-1] = Fact(last.id, f"{last.text} {line.strip()}", last.line, last.section)
            continue
        continues_fact = False
        if line.startswith("## "):
            section = line[3:].strip()
        elif (title := _TITLE.match(line)) and not name:
            name = title[1]
        elif helpdesk_match := HELPDESK_LINE.match(line):
            helpdesk = helpdesk_match[1]
        elif NEAR_FACT_LINE.match(line):
            suspicious.append(number)
    return Handbook(name, helpdesk, tuple(facts), tuple(suspicious))


def read_handbook(path: Path) -> Handbook:
    # utf-8-sig: files saved by some editors start with a BOM.
    return parse_handbook(path.read_text(encoding="utf-8-sig"))
