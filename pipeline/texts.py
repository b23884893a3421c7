"""The fixed texts the pipeline answers with: help, reset, switching departments."""

from __future__ import annotations

from core.company import BASE, Company
from core.messages import Route

RESET_TEXT = "Done: I have forgotten this conversation."
# Channels cannot send an empty message; say so instead.
EMPTY_REPLY = "Sorry, I could not come up with an answer. Could you rephrase the question?"


def help_text(company: Company) -> str:
    return (
        f"Ask me anything and I will pick the right department: {', '.join(d.name for d in company.departments)}."
        f"\nCommands: {' '.join(f'/{d}' for d in company.ids)} talk to one department until /auto; "
        "/base the general assistant; /auto automatic routing; /reset forget this conversation; /help this text."
    )


def switched_text(route: Route, company: Company) -> str:
    """The confirmation of a routing command sent on its own (/hr, /base, /auto)."""
    if route.pinned:
        name = ("the general assistant" if route.department == BASE
                else f"the {company.department(route.department).name} assistant")
        return f"You are now talking to {name}. Send /auto to let me pick the department again."
    return "Automatic routing is on: I will pick the department for each message."
