"""Reading a handbook into facts, sections, the department's name and its helpdesk."""

from knowledge.handbook import NOT_COVERED_PHRASE, parse_handbook

HANDBOOK = """# IT handbook — Example Ltd

Intro text that is not a fact.

**Helpdesk:** the IT desk on extension 1234.

## Laptops

- **IT-01** Every employee gets one laptop,
  replaced every 4 years.
- **IT-02** Lost laptops are reported within 24 hours.

## Accounts
- **it-3** a typo that must not vanish silently
- **IT-03** Passwords change every 90 days.
"""


def test_facts_sections_name_and_helpdesk() -> None:
    handbook = parse_handbook(HANDBOOK)
    assert [(f.id, f.section, f.line) for f in handbook.facts] == [
        ("IT-01", "Laptops", 9), ("IT-02", "Laptops", 11), ("IT-03", "Accounts", 15)]
    assert handbook.facts[0].text == "Every employee gets one laptop, replaced every 4 years."
    assert handbook.name == "IT" and handbook.helpdesk == "the IT desk on extension 1234"
    assert handbook.suspicious == (14,)


def test_not_covered_reply_names_the_helpdesk() -> None:
    reply = parse_handbook(HANDBOOK).not_covered
    assert reply == "The IT handbook does not cover that. Please ask the IT desk on extension 1234."
    assert NOT_COVERED_PHRASE in reply
    assert parse_handbook("- **X-01** fact\n").not_covered == "The handbook does not cover that."
