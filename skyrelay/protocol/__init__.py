"""The client protocol, shared by the edge (the server side) and the SDK (the client side).

``codes`` holds every number of the protocol and what it means for a client; ``framing`` how
several messages share one transport message. A wire format (JSON today) implements the codec
interface of ``codec``: the edge keeps the half only a server needs (decoding commands,
encoding replies and pushes), the SDK the other half. This package imports neither side.
"""
