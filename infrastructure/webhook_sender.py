"""Sends one webhook message over HTTP, signed per Standard Webhooks, through the URL guard.

One pooled `aiohttp` session (built by the URL guard, so every connection is judged on the
address actually reached) serves every subscription. Redirects are not followed: a
receiver answers where it was registered. What a send comes to is always an `Attempt`;
any answer but a 2xx is a failure (retried, as Standard Webhooks asks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from application.webhook_dispatcher import Attempt
from domain.errors import UrlBlocked
from domain.masking import mask_url
from domain.webhook import sign
from infrastructure.url_guard import UrlGuard

EXCERPT_BYTES = 1024
USER_AGENT = "cronsource-webhooks/1"
GONE = 410  # the receiver says the subscription is over: it is disabled at once


class WebhookSender:
    """Signs and posts messages; bound to the event loop it first runs in."""

    def __init__(
        self,
        guard: UrlGuard,
        timeout_seconds: float = 10.0,
        on_blocked: Callable[[], None] | None = None,
    ) -> None:
        self.guard, self.timeout = guard, timeout_seconds
        self.on_blocked = on_blocked or _nothing  # counted in the metrics
        self._session: aiohttp.ClientSession | None = None

    async def send(self, url: str, secret: str, message_id: str, body: bytes) -> Attempt:
        """POST `body` to `url` with the signature headers; never raises for a failed send."""
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
        }
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                with self.guard.refusals_as_blocked():  # e.g. a URL without a host
                    async with self._shared().post(
                        url, data=body, headers=headers, allow_redirects=False
                    ) as response:
                        excerpt = await response.content.read(EXCERPT_BYTES)
                        status = response.status
        except TimeoutError:
            return _failed(started, "TIMEOUT", f"no answer within {self.timeout:g} s")
        except UrlBlocked as e:  # retried too: the operator may allow the target meanwhile
            self.on_blocked()
            return _failed(started, "URL_BLOCKED", e.reason)
        except aiohttp.ClientError as e:
            return _failed(started, "CONNECTION", f"{mask_url(url)}: {type(e).__name__}: {e}")
        ok = 200 <= status < 300
        return Attempt(
            ok=ok,
            status=status,
            latency_ms=_elapsed_ms(started),
            response=excerpt.decode("utf-8", errors="replace"),
            error=None if ok else f"HTTP {status}",
            gone=status == GONE,
        )

    async def close(self) -> None:
        """Close the pooled connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _shared(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self.guard.session(
                cookie_jar=aiohttp.DummyCookieJar(),  # subscriptions of many tenants share it
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _failed(started: float, code: str, message: str) -> Attempt:
    return Attempt(
        ok=False, status=None, latency_ms=_elapsed_ms(started), response=None,
        error=f"{code}: {message}",
    )  # fmt: skip


def _nothing() -> None:
    pass
