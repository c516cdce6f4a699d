"""Who may open a link to this shard: every edge and shard proves itself before its first
request is read. Where the shard listens with TLS, by a client certificate that chains to the
cluster's CA (checked in the TLS handshake; a link without one is refused here). Where it
does not, by answering a challenge with the link secret (``skyrelay.link.auth``). A refusal
is a 401 before the WebSocket upgrade, and a log line naming the address.

What belongs here: the checks at the link's door, and the challenge endpoint. What never does:
what a link carries once open (``origin.link``).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from skyrelay.link.auth import ANSWER_HEADER, Keyring, NonceBook, parse_answer

log = logging.getLogger("skyrelay.origin.link")


class LinkGuard:
    def __init__(self, keyring: Keyring) -> None:
        self.nonces = NonceBook()
        # The process's secrets, shared with its own links (a reload updates them).
        self.keyring = keyring

    async def challenge(self, request: web.Request) -> web.Response:
        if self.keyring.secrets is None:
            return web.json_response({"error": "links take no challenge here"}, status=404)
        return web.json_response({"nonce": self.nonces.issue(time.monotonic())})

    def check(self, request: web.Request, peer: str) -> tuple[str | None, str | None]:
        """(why the link ``peer`` asks for may not open, or None; the shard's proof to send
        it once open, where it answered a challenge)."""
        transport = request.transport
        if transport is not None and transport.get_extra_info("sslcontext") is not None:
            # The handshake verified any certificate against the cluster's CA already.
            if not transport.get_extra_info("peercert"):
                return "no client certificate", None
            return None, None
        secrets = self.keyring.secrets
        if secrets is None:
            return None, None
        parsed = parse_answer(request.headers.get(ANSWER_HEADER, ""))
        if parsed is None:
            return "no answer to a challenge", None
        nonce, answer = parsed
        if not self.nonces.spend(nonce, time.monotonic()):
            return "a challenge not issued here, expired, or already answered", None
        if not secrets.answer_is_good(nonce, peer, answer):
            return "a wrong answer to the challenge", None
        return None, secrets.proof(nonce, peer)

    def refuse(self, request: web.Request, peer: str, why: str) -> web.Response:
        log.warning("link from %s (%s) refused: %s", peer, request.remote or "?", why)
        return web.json_response({"error": f"link refused: {why}"}, status=401)


LINK_GUARD_KEY = web.AppKey("link_guard", LinkGuard)
