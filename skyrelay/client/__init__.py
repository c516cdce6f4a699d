"""Skyrelay's offline-first Python client.

    async with Client(["http://127.0.0.1:8000"], token=token, state="app.db") as client:
        sub = await client.subscribe("chat")
        await client.publish("chat", {"text": "hi"})
        async for event in sub:
            if isinstance(event, Publication):
                print(event.offset, event.data)

The protocol core (``session``) does no I/O; ``connection`` and ``transports`` drive it.
"""

from skyrelay.client.client import Client
from skyrelay.client.crypto import Keyring, key_from_text, key_to_text, new_key
from skyrelay.client.errors import (
    ClientClosed,
    ClientError,
    ConnectionRefused,
    DecryptionError,
    ReplyError,
    SubscriptionEnded,
)
from skyrelay.client.events import (
    ClientEvent,
    Connected,
    Connecting,
    DecryptionFailed,
    Disconnected,
    Publication,
    PublishFailed,
    SubscriptionEvent,
    Unrecovered,
)
from skyrelay.client.settings import TRANSPORT_ORDER, ClientSettings
from skyrelay.client.subscription import Subscription

__all__ = [
    "TRANSPORT_ORDER",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientEvent",
    "ClientSettings",
    "Connected",
    "Connecting",
    "ConnectionRefused",
    "DecryptionError",
    "DecryptionFailed",
    "Disconnected",
    "Keyring",
    "Publication",
    "PublishFailed",
    "ReplyError",
    "Subscription",
    "SubscriptionEnded",
    "SubscriptionEvent",
    "Unrecovered",
    "key_from_text",
    "key_to_text",
    "new_key",
]
