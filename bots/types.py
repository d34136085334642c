"""What flows through the conversation core, whatever the platform.

Adapters (Telegram through aiogram, the WeChat official account through wechatpy, the console)
turn platform updates into `Incoming` and render the `Reply` list the core returns; the core
never sees a platform object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ChatKind = Literal["private", "group"]


@dataclass(frozen=True)
class Button:
    text: str
    data: str | None = None  # a button press comes back as Incoming.callback
    url: str | None = None  # or a link button


@dataclass(frozen=True)
class Reply:
    text: str = ""
    image: bytes | None = None  # PNG
    image_key: str | None = None  # content hash of the image, for platform media caches
    buttons: tuple[tuple[Button, ...], ...] = ()  # rows of buttons (a menu on WeChat)
    link: str | None = None
    private: bool = False  # may only go to the user's private chat (vouchers)


@dataclass(frozen=True)
class Member:
    external_id: str
    name: str = ""


@dataclass(frozen=True)
class Incoming:
    platform: str  # models.chat.Platform value
    chat_id: str
    chat_kind: ChatKind
    sender: Member
    text: str = ""  # free text, or a command like "/bind ABCD1234" or a keyword like "海报"
    callback: str | None = None  # data of a pressed button
    start_payload: str | None = None  # Telegram deep-link payload or WeChat QR scene
    joined: tuple[Member, ...] = field(default_factory=tuple)  # new group members

    @property
    def chat_key(self) -> str:
        return f"{self.platform}:{self.chat_id}"
