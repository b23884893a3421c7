from hypothesis import given, settings
from hypothesis import strategies as st

from bots.chunking import split_text, utf16_length

# Fragments, not single characters: flags and Devanagari clusters are several code points.
WORDS = st.lists(
    st.sampled_from(list("abcdefghij ") + ["😀", "🇮🇳", "नम", "स्ते", "।", ".", "\n", "\n\n", "é"]),
    max_size=200,
).map("".join)


@given(WORDS, st.integers(min_value=2, max_value=60))
@settings(max_examples=300, deadline=None)
def test_pieces_fit_and_keep_every_word(text, limit):
    pieces = split_text(text, limit, utf16_length)
    assert all(0 < utf16_length(p) <= limit or len(p) == 1 for p in pieces)
    assert "".join("".join(p.split()) for p in pieces) == "".join(text.split())


def test_prefers_paragraphs_then_sentences():
    text = "First paragraph here.\n\nSecond one. It has two sentences."
    assert split_text(text, 30) == ["First paragraph here.", "Second one.", "It has two sentences."]
    assert split_text(text, 200) == [text]


def test_telegram_counts_utf16_units():
    emoji = "😀" * 3000  # 6000 UTF-16 units, 3000 characters
    pieces = split_text(emoji, 4096, utf16_length)
    assert [utf16_length(p) for p in pieces] == [4096, 1904]
    assert "".join(pieces) == emoji
