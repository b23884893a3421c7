"""Pipeline logic against in-memory ports (tests/fakes.py): commands, pins, memory, grounding, fallbacks."""

from __future__ import annotations

import pytest

from core.company import load_company
from core.messages import Entry, Grounding, IncomingMessage, Turn
from memory.in_process import InProcessMemory
from pipeline.service import UnknownModel
from pipeline.texts import EMPTY_REPLY, RESET_TEXT, help_text
from tests.conftest import run
from tests.fakes import FixedKnowledge, RecordedMetrics, ScriptedBackend, fake_pipeline

COMPANY = load_company()
ENTRIES = Grounding(
    (Entry("HR-01", "Casual leave is 12 days a year.", 0.9, "Leave"), Entry("HR-02", "Sick leave is 10 days.", 0.5)),
    "The HR handbook does not cover that. Please ask HR.",
)


class Setup:
    def __init__(self, answer="an answer", *, automatic="finance", untrained=(), grounding=None, window=4,
                 max_input_chars=4000) -> None:
        self.backend = ScriptedBackend(answer, untrained=untrained, departments=COMPANY.targets)
        self.metrics = RecordedMetrics()
        self.memory = InProcessMemory(window)
        self.knowledge = FixedKnowledge(grounding) if grounding else None
        self.pipeline = fake_pipeline(self.backend, automatic=automatic, knowledge=self.knowledge, memory=self.memory,
                                      metrics=self.metrics, max_input_chars=max_input_chars)

    def say(self, text: str, conversation: str = "c1"):
        return run(self.pipeline.handle(IncomingMessage("test", conversation, text)))

    def window(self, conversation: str = "c1") -> list[Turn]:
        return run(self.memory.window(conversation))


def test_a_message_goes_to_the_routed_department_with_the_remembered_window() -> None:
    setup = Setup(window=4)
    for text in ("one", "two", "three"):
        reply = setup.say(text)
    assert (reply.route.department, reply.route.reason, reply.text) == ("finance", "classifier", "an answer")
    last = setup.backend.calls[-1]
    # The window holds the last two exchanges; the model gets them and the new question.
    assert [t.content for t in last.turns] == ["one", "an answer", "two", "an answer", "three"]
    assert [t.content for t in setup.window()] == ["two", "an answer", "three", "an answer"]
    assert setup.window()[-1].department == "finance"
    assert setup.metrics.outcomes == [("finance", "ok")] * 3


def test_a_department_command_pins_the_conversation_until_auto() -> None:
    setup = Setup(automatic="finance")
    switched = setup.say("/hr")
    assert switched.text.startswith("You are now talking to the HR assistant") and not setup.backend.calls
    pinned = setup.say("what is my leave balance?")
    assert (pinned.route.department, pinned.route.reason, pinned.route.pinned) == ("hr", "command", True)
    released = setup.say("/auto and the budget?")
    assert (released.route.department, released.route.pinned) == ("finance", False)
    assert setup.backend.calls[-1].turns[-1].content == "and the budget?"  # the command is not the question
    assert setup.say("next").route.reason == "classifier"


def test_an_inline_command_answers_that_message_and_pins() -> None:
    setup = Setup(automatic="finance")
    reply = setup.say("/sales what does the premium plan cost?")
    assert reply.route.department == "sales"
    assert setup.backend.calls[-1].turns[-1] == Turn("user", "what does the premium plan cost?")
    assert setup.say("and the basic one?").route.department == "sales"


def test_reset_forgets_the_conversation_and_its_pin() -> None:
    setup = Setup(automatic="finance")
    setup.say("/hr")
    setup.say("hello")
    assert setup.say("/reset").text == RESET_TEXT
    assert setup.window() == []
    assert setup.say("hello again").route.department == "finance"
    assert setup.window(conversation="other") == []


def test_help_and_unknown_commands_answer_without_the_model() -> None:
    setup = Setup()
    assert setup.say("/help").text == help_text(COMPANY)
    unknown = setup.say("/legal can I sign this?")
    assert unknown.text == f"There is no /legal here. {help_text(COMPANY)}"
    assert not setup.backend.calls and setup.window() == []
    assert setup.metrics.outcomes == [("base", "command"), ("base", "command")]


def test_a_long_message_is_cut_and_the_reply_says_so() -> None:
    setup = Setup(max_input_chars=10)
    reply = setup.say("x" * 50)
    assert setup.backend.calls[-1].turns[-1].content == "x" * 10
    assert reply.text == "(Your message was cut to its first 10 characters.)\n\nan answer"


def test_an_empty_answer_becomes_a_request_to_rephrase() -> None:
    setup = Setup(answer="")
    assert setup.say("hello").text == EMPTY_REPLY
    assert setup.window()[-1].content == EMPTY_REPLY


def test_cited_entries_become_sources_and_leave_the_text() -> None:
    setup = Setup("[HR-02] Ten days.", automatic="hr", grounding=ENTRIES)
    reply = setup.say("how much sick leave?")
    assert reply.text == "Ten days." and [e.id for e in reply.sources] == ["HR-02"]
    assert setup.backend.calls[-1].grounding.entries == ENTRIES.entries
    assert setup.knowledge.asked == [("hr", "how much sick leave?")]


def test_an_uncited_answer_used_what_it_was_shown_unless_it_says_not_covered() -> None:
    shown = Setup("Twelve days.", automatic="hr", grounding=ENTRIES).say("casual leave?")
    assert [e.id for e in shown.sources] == ["HR-01", "HR-02"]
    refused = Setup(ENTRIES.not_covered, automatic="hr", grounding=ENTRIES).say("parking?")
    assert refused.sources == ()


def test_an_untrained_department_quotes_its_best_handbook_entry() -> None:
    setup = Setup(automatic="hr", untrained=["hr"], grounding=ENTRIES)
    reply = setup.say("casual leave?")
    assert reply.text == "From the handbook: Casual leave is 12 days a year." and reply.sources == ENTRIES.entries[:1]
    assert not setup.backend.calls


def test_a_failing_model_is_counted_as_an_error_and_raised() -> None:
    def fail(*_):
        raise RuntimeError("model crashed")

    setup = Setup(fail)
    with pytest.raises(RuntimeError, match="model crashed"):
        setup.say("hello")
    assert setup.metrics.outcomes == [("finance", "error")]
    assert setup.window() == []  # nothing remembered of a message that got no answer


def test_the_api_path_routes_a_requested_model_and_refuses_unknown_ones() -> None:
    setup = Setup(automatic="finance")
    reply = run(setup.pipeline.complete("hr", [Turn("user", "hi"), Turn("assistant", "hello"), Turn("user", "leave?")]))
    assert (reply.route.department, reply.route.reason) == ("hr", "requested")
    assert [t.content for t in setup.backend.calls[-1].turns] == ["hi", "hello", "leave?"]
    assert run(setup.pipeline.complete("auto", [Turn("user", "budget?")])).route.department == "finance"
    with pytest.raises(UnknownModel):
        run(setup.pipeline.complete("legal", [Turn("user", "hi")]))
    with pytest.raises(ValueError, match="last message must come from the user"):
        run(setup.pipeline.complete("hr", [Turn("user", "hi"), Turn("assistant", "hello")]))
    with pytest.raises(ValueError, match="empty once the routing command is removed"):
        run(setup.pipeline.complete("auto", [Turn("user", "/hr")]))
    assert setup.window() == []  # the API's history is the caller's, not remembered


def test_a_stream_leaves_citation_markers_out_of_the_text_and_counts_the_first_token() -> None:
    setup = Setup("[HR-01] Twelve days a year.", grounding=ENTRIES)

    async def collect():
        stream = await setup.pipeline.stream("hr", [Turn("user", "casual leave?")])
        return "".join([delta async for delta in stream]), stream.reply

    text, reply = run(collect())
    assert text == "Twelve days a year." and reply.text == text
    assert [e.id for e in reply.sources] == ["HR-01"]
    assert setup.metrics.first_tokens == ["hr"] and setup.metrics.outcomes == [("hr", "ok")]


def test_a_picked_department_answers_without_routing_and_commands_still_work() -> None:
    setup = Setup(automatic="finance")
    reply = run(setup.pipeline.handle(IncomingMessage("web", "w1", "leave?"), model="hr"))
    assert (reply.route.department, reply.route.reason, reply.route.pinned) == ("hr", "requested", False)
    assert run(setup.pipeline.handle(IncomingMessage("web", "w1", "/reset"), model="hr")).text == RESET_TEXT
    with pytest.raises(UnknownModel):
        run(setup.pipeline.handle(IncomingMessage("web", "w1", "hi"), model="legal"))


def test_a_remembered_conversation_streams_and_is_remembered_once_the_stream_ends() -> None:
    setup = Setup("[HR-01] Twelve days a year.", automatic="hr", grounding=ENTRIES, max_input_chars=30)

    async def collect(text: str):
        stream = await setup.pipeline.handle_stream(IncomingMessage("web", "c1", text))
        deltas = [delta async for delta in stream]
        return deltas, stream.reply

    deltas, reply = run(collect("how many casual leaves do I get in a year, please?"))
    note = "(Your message was cut to its first 30 characters.)\n\n"
    assert deltas[0] == note and "".join(deltas) == reply.text == note + "Twelve days a year."
    assert [e.id for e in reply.sources] == ["HR-01"]
    assert [t.content for t in setup.window()] == ["how many casual leaves do I ge", "Twelve days a year."]
    deltas, reply = run(collect("/help"))
    assert deltas == [help_text(COMPANY)] and reply.route.reason == "command"
