"""The WebSocket transport of the edge, on two paths that end in the same place.

Every connection starts in ``front``. A plain upgrade of ``/connection/websocket`` is answered
there (``handshake``) and served by the edge's own path: a slotted ``asyncio.Protocol``
(``connection``) with a sans-I/O frame reader (``reader``), about 3.5 KiB per idle connection.
Anything else goes to aiohttp, and an upgrade this path does not take (permessage-deflate
while it is on, a subprotocol) is served by aiohttp's WebSocket (``aiohttp_path``, with
``guard`` refusing unmasked client frames, which aiohttp accepts), about 17 KiB per connection.

Both paths implement the same interface: they feed each text message to an
``edge.client.Client`` and give it a ``Sink`` (send, deliver, close) that writes pre-built
frames (``frame``) through the connection's bounded outbox. The client, its commands and its
subscriptions never know which path serves them.
"""
