"""Instagram messaging webhooks (Messenger Platform for Instagram).

Same shape and rules as Messenger (see `processor.channels.messenger`), with
`object=instagram`, `entry[].id` = the Instagram professional account id and the customer's
Instagram-scoped id (IGSID) as sender/recipient. `message.is_deleted` (the customer unsent a
message) and `message_edit` items are ignored; echoes (`is_echo`) are business-side messages.
"""

from __future__ import annotations

from collections.abc import Iterable

from processor.channels.messenger import MessagingAdapter

__all__ = ["InstagramAdapter"]


class InstagramAdapter(MessagingAdapter):
    """Instagram DMs: `object=instagram`, thread = (IG account id, IGSID)."""

    def __init__(self, secret: str, verify_token: str, bot_app_ids: Iterable[str] = ()) -> None:
        super().__init__(
            name="instagram",
            object_name="instagram",
            secret=secret,
            verify_token=verify_token,
            bot_app_ids=bot_app_ids,
        )
