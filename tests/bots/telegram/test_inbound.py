import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.events import CallbackQuery, ChatBlocked, Ignored, Message, Notice
from bots.telegram.inbound import MEDIA_NOTICE, BotIdentity, parse_update, secret_matches
from core.messages import IncomingMessage
from core.redaction import tag
from tests.bots.telegram import payloads as p
from tests.conftest import FIXTURES

SAMPLES = FIXTURES / "telegram"
ME = BotIdentity(id=7000000001, username="example_test_bot")
GROUP_ID = str(p.GROUP["id"])


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def private_message(text: str, update_id: int, message_id: int) -> Message:
    incoming = IncomingMessage("telegram", "telegram:100000001", text, "100000001", str(message_id))
    return Message(incoming=incoming, reply_to="100000001", dedupe_key=f"telegram:{update_id}")


# -- the shared sample payloads ---------------------------------------------------

EXPECTED = {
    "private_text.json": private_message("Hello bot, what can you do?", 900000001, 101),
    "start_command.json": private_message("/start", 900000002, 102),
    "edited_message.json": Ignored("edited"),
    "photo_caption.json": private_message("What is in this picture? 🌅", 900000006, 106),
    "callback_query.json": CallbackQuery(
        callback_query_id="430000000000000001",
        reply_to="100000001",
        data="lang:hi",
        dedupe_key="telegram:900000009",
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_payloads_parse_to_the_right_event(name):
    assert parse_update(sample(name), ME) == EXPECTED[name]


def test_every_sample_payload_is_understood():
    names = sorted(path.name for path in SAMPLES.glob("*.json"))
    assert names == sorted(EXPECTED), f"sample payloads missing from {SAMPLES}"
    for name in names:
        assert parse_update(sample(name), ME) != Ignored("malformed"), name


# -- private chats -------------------------------------------------------------------


def test_devanagari_text_is_passed_through_unchanged():
    question = "नमस्ते, मेरी छुट्टी कितनी बची है? 🙏"
    event = parse_update(p.text(question, update_id=7), ME)
    assert event == Message(
        IncomingMessage("telegram", "telegram:100000001", question, "100000001", "507"),
        reply_to="100000001",
        dedupe_key="telegram:7",
    )


def test_routing_commands_pass_through_as_text():
    event = parse_update(p.text("/hr how many leaves do I have?"), ME)
    assert isinstance(event, Message)
    assert event.incoming.text == "/hr how many leaves do I have?"


@pytest.mark.parametrize("kind", ["sticker", "voice", "video", "document", "location", "photo"])
def test_media_without_text_gets_the_text_only_notice(kind):
    event = parse_update(p.message(update_id=3, **{kind: p.MEDIA[kind]}), ME)
    assert event == Notice(reply_to="100000001", text=MEDIA_NOTICE, dedupe_key="telegram:3")


def test_service_messages_and_polls_are_ignored():
    poll = {
        "id": "1", "question": "Lunch?", "options": [{"text": "Yes", "voter_count": 0}],
        "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
        "allows_multiple_answers": False,
    }
    assert isinstance(parse_update(p.message(poll=poll), ME), Ignored)
    assert isinstance(parse_update({"update_id": 5, "poll": poll}, ME), Ignored)
    assert isinstance(parse_update(p.message(chat=p.GROUP, new_chat_members=[p.OTHER]), ME), Ignored)


# -- groups --------------------------------------------------------------------------


def group_text(value: str, **fields) -> dict:
    return p.text(value, update_id=11, chat=p.GROUP, **fields)


def test_group_chatter_not_addressed_to_the_bot_is_ignored():
    assert isinstance(parse_update(group_text("lunch anyone?"), ME), Ignored)
    assert isinstance(parse_update(group_text("ask @other_bot about it"), ME), Ignored)
    assert isinstance(parse_update(group_text("mail me at x@example_test_bot_fan.com"), ME), Ignored)
    reply_to_person = group_text("agreed", reply_to_message=p.replying_to(p.OTHER))
    assert isinstance(parse_update(reply_to_person, ME), Ignored)


@pytest.mark.parametrize(
    ("said", "answered"),
    [
        ("@example_test_bot what is the leave policy?", "what is the leave policy?"),
        ("Hey @Example_Test_Bot, how many leaves do I have?", "Hey how many leaves do I have?"),
        ("@example_test_bot: /hr payroll dates", "/hr payroll dates"),
        ("@example_test_bot", "/help"),
    ],
)
def test_group_mention_is_answered_without_the_mention(said, answered):
    mention = {"type": "mention", "offset": said.lower().index("@example"), "length": 17}
    event = parse_update(group_text(said, entities=[mention]), ME)
    assert isinstance(event, Message)
    assert event.incoming.text == answered
    assert event.reply_to == GROUP_ID
    assert event.incoming.conversation_id == f"telegram:{GROUP_ID}"
    assert event.incoming.user_id == "100000001"


@pytest.mark.parametrize(
    "command", ["/hr what are the holidays?", "/hr@example_test_bot what are the holidays?"]
)
def test_group_commands_are_answered(command):
    entity = {"type": "bot_command", "offset": 0, "length": 3}
    event = parse_update(group_text(command, entities=[entity]), ME)
    assert isinstance(event, Message)
    assert event.incoming.text == command


def test_group_command_for_another_bot_is_ignored():
    assert isinstance(parse_update(group_text("/hr@other_bot what are the holidays?"), ME), Ignored)


def test_group_reply_to_the_bot_is_answered():
    event = parse_update(group_text("and for interns?", reply_to_message=p.replying_to(p.ME)), ME)
    assert isinstance(event, Message)
    assert event.incoming.text == "and for interns?"


def test_group_media_only_gets_a_notice_when_addressed():
    sticker = p.MEDIA["sticker"]
    unaddressed = p.message(12, chat=p.GROUP, sticker=sticker)
    addressed = p.message(12, chat=p.GROUP, sticker=sticker, reply_to_message=p.replying_to(p.ME))
    assert isinstance(parse_update(unaddressed, ME), Ignored)
    assert parse_update(addressed, ME) == Notice(GROUP_ID, MEDIA_NOTICE, "telegram:12")
    captioned = p.message(13, chat=p.GROUP, photo=p.PHOTO, caption="@example_test_bot is this my ID card?")
    assert parse_update(captioned, ME).incoming.text == "is this my ID card?"


def test_messages_from_other_bots_are_ignored():
    from_bot = p.message(14, chat=p.GROUP, sender=p.OTHER_BOT, text="/hr@example_test_bot hi")
    assert parse_update(from_bot, ME) == Ignored("from a bot")


# -- other update kinds --------------------------------------------------------------


def test_channel_posts_are_ignored():
    post = {"message_id": 1, "chat": p.CHANNEL, "date": p.DATE, "text": "Quarterly results"}
    assert parse_update({"update_id": 20, "channel_post": post}, ME) == Ignored("channel post")
    edited = {**post, "edit_date": p.DATE + 5}
    assert parse_update({"update_id": 21, "edited_channel_post": edited}, ME) == Ignored("channel post")


def test_callback_query_from_an_inline_message_answers_the_presser():
    update = {
        "update_id": 22,
        "callback_query": {"id": "99", "from": p.USER, "chat_instance": "1", "inline_message_id": "abc"},
    }
    assert parse_update(update, ME) == CallbackQuery("99", "100000001", "", "telegram:22")


def test_user_blocking_and_unblocking_the_bot():
    assert parse_update(p.my_chat_member("member", "kicked"), ME) == ChatBlocked("100000001", blocked=True)
    assert parse_update(p.my_chat_member("kicked", "member"), ME) == ChatBlocked("100000001", blocked=False)


def test_bot_removed_from_and_added_to_a_group():
    assert parse_update(p.my_chat_member("member", "left", p.GROUP), ME) == ChatBlocked(GROUP_ID, True)
    assert parse_update(p.my_chat_member("left", "member", p.GROUP), ME) == ChatBlocked(GROUP_ID, False)
    promoted = p.my_chat_member("member", "administrator", p.GROUP)
    assert parse_update(promoted, ME) == Ignored("membership change")


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "update",
        {},
        {"update_id": "9", "message": p.text("hi")["message"]},
        {"update_id": 9, "message": "hi"},
        {"update_id": 9, "message": {"message_id": 1, "date": p.DATE, "text": "no chat"}},
        {"update_id": 9, "message": {**p.text("hi")["message"], "chat": {"id": "x", "type": "private"}}},
        {"update_id": 9, "callback_query": {"id": "1"}},
        {"update_id": 9, "my_chat_member": {"chat": p.PRIVATE}},
    ],
)
def test_malformed_payloads_are_ignored_not_raised(payload):
    assert parse_update(payload, ME) == Ignored("malformed")


def test_unknown_update_kinds_are_ignored():
    assert parse_update({"update_id": 30}, ME) == Ignored("unsupported update")
    assert isinstance(parse_update({"update_id": 31, "some_future_update": {"x": 1}}, ME), Ignored)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)
KEYS = ["message", "edited_message", "callback_query", "my_chat_member", "channel_post", "update_id"]


INNER = ["chat", "from", "text", "date", "message", "status", "id"]


@given(st.sampled_from(KEYS), st.sampled_from(INNER), JSON)
@settings(max_examples=300, deadline=None)
def test_never_raises_on_corrupted_updates(top, inner, junk):
    updates = [
        p.text("hi"),
        p.my_chat_member("member", "kicked"),
        {"update_id": 3, "callback_query": {"id": "1", "from": p.USER, "chat_instance": "1"}},
    ]
    for update in updates:
        corrupted = json.loads(json.dumps(update))
        if isinstance(corrupted.get(top), dict):
            corrupted[top][inner] = junk
        else:
            corrupted[top] = junk
        assert parse_update(corrupted, ME) is not None


# -- secrets and redaction -------------------------------------------------------------


def test_secret_check():
    assert secret_matches("s3cr3t-Token_1", "s3cr3t-Token_1")
    assert not secret_matches(None, "s3cr3t-Token_1")
    assert not secret_matches("", "s3cr3t-Token_1")
    assert not secret_matches("s3cr3t-Token_2", "s3cr3t-Token_1")
    assert not secret_matches("s3cr3t-Token_1 ", "s3cr3t-Token_1")
    assert not secret_matches("सीक्रेट", "s3cr3t-Token_1")
    assert not secret_matches("", "")  # no configured secret never means "accept anything"


def test_logs_show_update_ids_tagged_never_raw(caplog):
    with caplog.at_level(logging.DEBUG, logger="bots.telegram"):
        parse_update({"update_id": 987654321, "message": "not a message"}, ME)
    assert "987654321" not in caplog.text
    assert tag(987654321) in caplog.text
