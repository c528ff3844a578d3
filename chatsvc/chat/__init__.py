"""
The chat core: events, the rules for names, rooms and the hub that holds every rule, and the ports
the core talks through. Plain Python (with attrs and zope.interface): no transports, protocols,
reactors or files; time and Deferreds are passed in.

Everything a door or a storage backend needs is importable from here.
"""

from chatsvc.chat.errors import ChatError
from chatsvc.chat.events import (
    Acted,
    Event,
    Joined,
    JoinsAndLeaves,
    Left,
    Renamed,
    Said,
    TopicChanged,
    Whispered,
)
from chatsvc.chat.hub import (
    CROWD_INTERVAL,
    CROWD_SIZE,
    DEFAULT_ROOM,
    MAX_BLANK_RUN,
    MAX_TEXT_BYTES,
    MAX_TOPIC_LENGTH,
    ROOM_CREATION_INTERVAL,
    Hub,
    Room,
    RoomView,
    showText,
)
from chatsvc.chat.names import (
    KEY_RULES,
    MAX_NICK_LENGTH,
    MAX_ROOM_NAME_LENGTH,
    nick_key,
    room_key,
    validate_nick,
    validate_room_name,
)
from chatsvc.chat.ports import (
    DeliverToMany,
    DeliveryFailed,
    IBatchDelivery,
    IHistoryStore,
    IMember,
    INicknameRegistry,
    LocalNicknames,
    NicknameTaken,
    NullStore,
    StoredMessage,
    StoreError,
    deliverToEach,
)
from chatsvc.chat.rate import MAX_DEBT, Buckets, TokenBucket

__all__ = [
    "Acted",
    "Buckets",
    "CROWD_INTERVAL",
    "CROWD_SIZE",
    "ChatError",
    "DEFAULT_ROOM",
    "DeliverToMany",
    "DeliveryFailed",
    "Event",
    "Hub",
    "IBatchDelivery",
    "IHistoryStore",
    "IMember",
    "Joined",
    "JoinsAndLeaves",
    "KEY_RULES",
    "Left",
    "MAX_BLANK_RUN",
    "MAX_DEBT",
    "MAX_NICK_LENGTH",
    "MAX_ROOM_NAME_LENGTH",
    "MAX_TEXT_BYTES",
    "MAX_TOPIC_LENGTH",
    "INicknameRegistry",
    "LocalNicknames",
    "NicknameTaken",
    "NullStore",
    "ROOM_CREATION_INTERVAL",
    "Renamed",
    "Room",
    "RoomView",
    "Said",
    "StoreError",
    "StoredMessage",
    "TokenBucket",
    "TopicChanged",
    "Whispered",
    "deliverToEach",
    "nick_key",
    "room_key",
    "showText",
    "validate_nick",
    "validate_room_name",
]
