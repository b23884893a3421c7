"""The pipeline end to end with the real SmolLM2: route, remember, answer."""

import pytest

from core.company import load_company
from core.messages import IncomingMessage
from pipeline.texts import RESET_TEXT, help_text
from tests.conftest import run

pytestmark = pytest.mark.slow


def say(components, text, conversation="c1"):
    return run(components.pipeline.handle(IncomingMessage("test", conversation, text)))


def test_a_real_question_gets_a_real_answer(smollm2_components):
    reply = say(smollm2_components, "What is the capital of France?", conversation="geo")
    assert "Paris" in reply.text
    assert reply.route.department == "base" and reply.finish_reason == "stop"
    assert "<|im_end|>" not in reply.text and reply.completion_tokens > 0


def test_memory_holds_the_last_n_turns_and_reset_clears_it(smollm2_components):
    memory = smollm2_components.pipeline.memory
    say(smollm2_components, "My name is Priya.", conversation="mem")
    say(smollm2_components, "I work in Pune.", conversation="mem")
    say(smollm2_components, "I like chai.", conversation="mem")
    window = run(memory.window("mem"))
    assert len(window) == 4  # memory_window=4 in the fixture: the last two exchanges
    assert [t.content for t in window if t.role == "user"] == ["I work in Pune.", "I like chai."]
    assert say(smollm2_components, "/reset", conversation="mem").text == RESET_TEXT
    assert run(memory.window("mem")) == []


def test_the_model_is_given_the_remembered_conversation(smollm2_components):
    question = "Which city is that in?"
    alone = say(smollm2_components, question, conversation="ctx-fresh")
    first = say(smollm2_components, "I live near Howrah Bridge.", conversation="ctx")
    follow_up = say(smollm2_components, question, conversation="ctx")
    count = smollm2_components.backend.count_tokens
    # The prompt grew by exactly the previous exchange (plus its template tokens).
    grown = follow_up.prompt_tokens - alone.prompt_tokens
    assert grown >= count("I live near Howrah Bridge.") + count(first.text)


def test_a_department_command_sticks_until_auto(smollm2_components):
    first = say(smollm2_components, "/hr", conversation="pin")
    assert first.route.department == "hr" and "/auto" in first.text
    follow_up = say(smollm2_components, "How do I apply for leave?", conversation="pin")
    assert (follow_up.route.department, follow_up.route.reason) == ("hr", "command")
    assert follow_up.text
    released = say(smollm2_components, "/auto What is 2 + 2?", conversation="pin")
    assert released.route.department == "base" and released.route.reason in ("classifier", "fallback")
    assert not released.route.pinned
    assert say(smollm2_components, "/help", conversation="pin").text == help_text(load_company())
