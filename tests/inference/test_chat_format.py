from core.messages import Turn
from inference.chat_format import chat_messages, encode_chat, render_chat


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
