"""Grounding in the pipeline: which entries a reply names as its sources, and what it remembers."""

from core.messages import Entry, Grounding, IncomingMessage
from pipeline.quotes import quote
from pipeline.replies import cited, sources_line
from tests.conftest import run

ENTRIES = (Entry("HR-03", "Casual leave is 8 days.", 0.4, "Leave"), Entry("HR-04", "Sick leave is 10 days.", 0.2))
GROUNDING = Grounding(ENTRIES, "The HR handbook does not cover that. Please ask the HR helpdesk.")


def test_sources_are_the_entries_an_answer_cites():
    assert cited("[HR-04] Sick leave is 10 days a year.", GROUNDING) == ("Sick leave is 10 days a year.", ENTRIES[1:])
    # A model that cites nothing (one not trained to) used what it was shown ...
    assert cited("You get 8 days.", GROUNDING) == ("You get 8 days.", ENTRIES)
    # ... unless it says the handbook does not cover the question.
    assert cited(GROUNDING.not_covered, GROUNDING) == (GROUNDING.not_covered, ())
    assert cited("[HR-99] made up", GROUNDING) == ("made up", ())
    assert cited("[HR-03] no grounding", None) == ("[HR-03] no grounding", ())


def test_the_sources_line_and_the_quote_of_an_untrained_department():
    assert sources_line(ENTRIES) == "Sources: HR-03 (Leave), HR-04"
    assert sources_line(()) == ""
    assert cited(quote(GROUNDING).text, GROUNDING) == ("From the handbook: Casual leave is 8 days.", ENTRIES[:1])
    assert quote(Grounding((), GROUNDING.not_covered)).text == GROUNDING.not_covered


def test_memory_keeps_the_answer_without_markers_and_base_has_no_sources(tiny_components):
    pipeline = tiny_components.pipeline
    reply = run(pipeline.handle(IncomingMessage("test", "grounded-memory", "/hr how many casual leaves do I get?")))
    assert reply.sources[0].id == "HR-03" and "[HR-03]" not in reply.text
    remembered = run(pipeline.memory.window("grounded-memory"))[-1]
    assert remembered.content == reply.text and remembered.department == "hr"
    general = run(pipeline.handle(IncomingMessage("test", "grounded-memory", "/base what is 2 + 2?")))
    assert general.sources == ()


def test_grounding_off_builds_no_index(tmp_path, tiny_model_dir):
    from gateway.components import build_components
    from tests.conftest import make_settings

    off = build_components(make_settings(tmp_path, tiny_model_dir, grounding=False, router="commands"))
    assert off.knowledge is None and off.pipeline.grounding.knowledge is None
    on = build_components(make_settings(tmp_path, tiny_model_dir, grounding_k=5, router="commands"))
    assert on.pipeline.grounding.k == 5
    assert len(on.knowledge.retrieve("sales", "dealer margin on fans", 5).entries) == 5
