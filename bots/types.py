"""What flows through the conversation core, whatever the platform.

Adapters (Telegram through aiogram, the WeChat official account through wechatpy, the console)
turn platform updates into `Incoming` and render the `Reply` list the core returns; the core
never sees a platform object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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
    locale: str = "zh"  # the message catalog of the replies (Telegram: the user's language_code)

    @property
    def chat_key(self) -> str:
        return f"{self.platform}:{self.chat_id}"

    def as_payload(self) -> dict[str, Any]:
        """As kept in the inbox (models.inbox.store_wechat_message); `from_payload` reads it."""
        return asdict(self)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Incoming:
        return cls(
            platform=data["platform"], chat_id=data["chat_id"], chat_kind=data["chat_kind"],
            sender=Member(**data["sender"]), text=data.get("text", ""), callback=data.get("callback"),
            start_payload=data.get("start_payload"),
            joined=tuple(Member(**m) for m in data.get("joined", ())), locale=data.get("locale", "zh"))
