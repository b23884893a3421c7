from core.messages import Entry, Grounding, Turn
from inference.chat_format import CitationFilter, chat_messages, cite, encode_chat, render_chat, split_citations


def test_system_prompt_comes_first_and_client_system_turns_are_dropped():
    messages = chat_messages("You are HR.", [Turn("system", "ignore me"), Turn("user", "hi")])
    assert messages == [{"role": "system", "content": "You are HR."}, {"role": "user", "content": "hi"}]


def test_prompt_is_a_prefix_of_the_answered_conversation(tiny_components):
    # Training relies on this: answer tokens are what follows the prompt.
    tokenizer = tiny_components.backend._served["base"].tokenizer
    question = [Turn("user", "How many casual leaves do I get?")]
    prompt = encode_chat(tokenizer, "You are HR.", question, add_generation_prompt=True)
    full = encode_chat(
        tokenizer, "You are HR.", [*question, Turn("assistant", "Eight a year.")], add_generation_prompt=False
    )
    assert full[: len(prompt)] == prompt
    answer = tokenizer.decode(full[len(prompt):])
    assert answer.startswith("Eight a year.") and tokenizer.eos_token in answer


def test_template_is_the_tokenizers_own(tiny_components):
    tokenizer = tiny_components.backend._served["base"].tokenizer
    text = render_chat(tokenizer, "S", [Turn("user", "Q")], add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"


GROUNDING = Grounding(
    (Entry("HR-03", "Casual leave (CL) is 8 days per leave year.", 0.4), Entry("HR-04", "Sick leave is 10 days.", 0.1)),
    "The HR handbook does not cover that.",
)


def test_without_grounding_the_prompt_is_the_plain_fine_tuned_one(tiny_components):
    tokenizer = tiny_components.backend._served["base"].tokenizer
    turns = [Turn("user", "hi"), Turn("assistant", "Hello!"), Turn("user", "How many casual leaves?")]
    plain = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are HR."}, *({"role": t.role, "content": t.content} for t in turns)],
        tokenize=False, add_generation_prompt=True,
    )
    assert render_chat(tokenizer, "You are HR.", turns, add_generation_prompt=True) == plain


def test_grounding_puts_the_entries_with_the_newest_question_only():
    turns = [Turn("user", "hi"), Turn("assistant", "Hello!"), Turn("user", "How many casual leaves?")]
    messages = chat_messages("You are HR.", turns, GROUNDING)
    assert messages[0]["content"].startswith("You are HR. Answer from the handbook entries")
    assert messages[0]["content"].endswith("reply: The HR handbook does not cover that.")
    assert messages[1]["content"] == "hi"
    assert messages[3]["content"] == (
        "Handbook entries:\n[HR-03] Casual leave (CL) is 8 days per leave year.\n[HR-04] Sick leave is 10 days.\n\n"
        "Question: How many casual leaves?"
    )
    empty = chat_messages("You are HR.", turns[-1:], Grounding((), "Not covered."))
    assert empty[1]["content"] == "Handbook entries: none\n\nQuestion: How many casual leaves?"


def test_training_and_serving_send_the_same_grounded_prompt_tokens(tiny_components):
    from training.examples import IGNORE_INDEX, Example, sft_features

    backend = tiny_components.backend
    served = backend._served["hr"]
    question = "How many casual leaves do I get?"
    system = backend._prompts["hr"]
    features = sft_features(served.tokenizer, system, Example(question, cite("HR-03", "Eight days."), GROUNDING), 512)
    trained_prompt = features["input_ids"][: features["labels"].index(next(x for x in features["labels"]
                                                                           if x != IGNORE_INDEX))]
    served_prompt = backend._fit_prompt(served, "hr", [Turn("user", question)], 8, GROUNDING)
    assert trained_prompt == served_prompt
    assert "[HR-03] Casual leave" in served.tokenizer.decode(served_prompt)


def test_citations_are_split_from_the_answer_and_streamed_without_them():
    text = "[HR-03] You get 8 days of CL [HR-04]. Ask [your manager]."
    assert split_citations(text) == ("You get 8 days of CL. Ask [your manager].", ["HR-03", "HR-04"])
    for size in (1, 2, 3, 5, 8):
        markers = CitationFilter()
        streamed = "".join(markers.feed(text[i : i + size]) for i in range(0, len(text), size)) + markers.finish()
        assert streamed == split_citations(text)[0]
