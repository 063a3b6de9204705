"""The correlation of each HTTP request: its id opened on the way in, returned as `X-Request-ID`.

Part of the HTTP surface (`bridge/http/`); the id itself is bridge/correlation.py's.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge import correlation


class CorrelationMiddleware:
    """Opens each HTTP request's correlation (bridge/correlation.py) and returns its id as `X-Request-ID`.

    A front end's `X-Request-ID` (e.g. nginx `$request_id`) is kept when plain; the CSD endpoint replaces
    it by the message's `wsa:MessageID`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                received = value.decode("latin-1")
                break
        state = correlation.begin(received)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[correlation.HEADER] = state.request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
