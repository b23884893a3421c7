"""Update payloads shaped like the Bot API's (all ids fake), for the shapes the samples lack."""

from __future__ import annotations

from typing import Any

from tests.bots.telegram.fake_bot_api import BOT_USER

USER = {"id": 100000001, "is_bot": False, "first_name": "Test", "username": "test_user_fake"}
OTHER = {"id": 100000002, "is_bot": False, "first_name": "Other", "username": "other_user_fake"}
OTHER_BOT = {"id": 7000000002, "is_bot": True, "first_name": "Other Bot", "username": "other_bot"}
ME = {k: BOT_USER[k] for k in ("id", "is_bot", "first_name", "username")}
PRIVATE = {"id": 100000001, "type": "private", "first_name": "Test", "username": "test_user_fake"}
GROUP = {"id": -1001234567890, "type": "supergroup", "title": "HR questions"}
CHANNEL = {"id": -1009876543210, "type": "channel", "title": "Company news"}
DATE = 1767225600


def message(update_id: int = 1, chat: dict = PRIVATE, sender: dict | None = USER, **fields: Any) -> dict:
    body: dict[str, Any] = {"message_id": 500 + update_id, "chat": chat, "date": DATE, **fields}
    if sender is not None:
        body["from"] = sender
    return {"update_id": update_id, "message": body}


def text(value: str, update_id: int = 1, chat: dict = PRIVATE, **fields: Any) -> dict:
    return message(update_id, chat, text=value, **fields)


def replying_to(sender: dict) -> dict:
    """A reply_to_message field: a message `sender` wrote earlier in the group."""
    return {"message_id": 400, "from": sender, "chat": GROUP, "date": DATE - 60, "text": "earlier"}


def member(status: str, user: dict = ME) -> dict:
    body: dict[str, Any] = {"user": user, "status": status}
    if status == "kicked":
        body["until_date"] = 0
    if status == "administrator":
        body.update(
            can_be_edited=False, is_anonymous=False, can_manage_chat=True, can_delete_messages=False,
            can_manage_video_chats=False, can_restrict_members=False, can_promote_members=False,
            can_change_info=False, can_invite_users=True, can_post_stories=False,
            can_edit_stories=False, can_delete_stories=False,
        )
    return body


def my_chat_member(old: str, new: str, chat: dict = PRIVATE, update_id: int = 1) -> dict:
    return {
        "update_id": update_id,
        "my_chat_member": {
            "chat": chat,
            "from": USER,
            "date": DATE,
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        },
    }


PHOTO = [{"file_id": "fake-photo", "file_unique_id": "fake-u", "width": 90, "height": 67}]
MEDIA: dict[str, Any] = {
    "sticker": {
        "file_id": "fake-sticker", "file_unique_id": "fake-s", "type": "regular",
        "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "👍",
    },
    "voice": {"file_id": "fake-voice", "file_unique_id": "fake-v", "duration": 3, "mime_type": "audio/ogg"},
    "video": {
        "file_id": "fake-video", "file_unique_id": "fake-vi", "width": 640, "height": 480, "duration": 5
    },
    "document": {"file_id": "fake-doc", "file_unique_id": "fake-d", "file_name": "payslip.pdf"},
    "location": {"latitude": 12.9716, "longitude": 77.5946},
    "photo": PHOTO,
}
