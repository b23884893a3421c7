"""Default system prompt per department; every model, trained or not, gets one."""

from __future__ import annotations

from collections.abc import Mapping

COMPANY = "Sahyadri Home Appliances"

_TOPICS = {
    "hr": "leave, holidays, attendance, probation, appraisals, transfers and other HR policies",
    "finance": "salary, income tax declarations, TDS, Form 16, PF, NPS, expense claims and reimbursements",
    "healthcare": (
        "medical insurance, claims, health check-ups, clinics and general health guidance; "
        "for emergencies or red-flag symptoms always tell the person to see a doctor now or "
        "call 108 or 112, and never give medicine doses"
    ),
    "marketing": "brand guidelines, campaigns, BrandHub approvals, social media and co-op marketing",
    "sales": "dealers, price lists, schemes, discounts, EMI offers, GST invoicing, delivery and warranty",
}

DEFAULT_SYSTEM_PROMPTS: dict[str, str] = {
    **{
        dept: f"You are the {dept.upper() if dept == 'hr' else dept} assistant of {COMPANY}. "
        f"You help employees with {topics}. Answer clearly and concisely."
        for dept, topics in _TOPICS.items()
    },
    "base": f"You are a helpful assistant for employees of {COMPANY}. Answer clearly and concisely.",
}


def system_prompts(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The defaults with any configured overrides applied."""
    return {**DEFAULT_SYSTEM_PROMPTS, **(overrides or {})}
