"""Answers one accepted event on the channel it came from."""

from __future__ import annotations

from bots.channel import ReplyChannel
from bots.events import Inbound, Message, Notice, Unparsed
from pipeline.replies import sources_line
from pipeline.service import Pipeline


class Responder:
    """The model for messages, fixed texts for notices, the channel for other events.

    With `show_sources`, a grounded reply ends with a line naming the handbook entries it used.
    """

    def __init__(self, pipeline: Pipeline, channels: dict[str, ReplyChannel], *, show_sources: bool = True) -> None:
        self.pipeline = pipeline
        self.channels = channels
        self.show_sources = show_sources

    async def answer(self, channel_name: str, event: Inbound) -> None:
        channel = self.channels.get(channel_name)
        if channel is None:
            raise LookupError(f"channel '{channel_name}' is not configured in this process")
        if isinstance(event, Unparsed):
            event = channel.parse(event.payload)
        if isinstance(event, Message):
            async with channel.working(event.reply_to):
                reply = await self.pipeline.handle(event.incoming)
            sources = sources_line(reply.sources) if self.show_sources else ""
            await channel.send(event.reply_to, f"{reply.text}\n\n{sources}" if sources else reply.text)
        elif isinstance(event, Notice):
            await channel.send(event.reply_to, event.text)
        else:
            await channel.handle_event(event)
