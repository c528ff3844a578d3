"""The twistd plugin: C{twistd -n chatroom --port 5051}."""

from twisted.application.service import ServiceMaker

chatroom = ServiceMaker(
    "chatsvc chat room",
    "chatsvc.tap",
    "A line-based chat room: GET_NAME, then chat (see chatsvc's docs/protocol.md).",
    "chatroom",
)
