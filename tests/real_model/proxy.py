"""A recording HTTP proxy on 127.0.0.1, between the RLM's client and a real model server.

The real-model tests check that the usage an RLM reports equals what the server
reported. Reading the server's own answers on the wire is the only independent
witness: the client's parsing is the thing under test. The proxy forwards every
request unchanged, keeps each answer's `usage` object, and notes whether the
client was still there to receive it (a call abandoned at a deadline is answered
by the server later, to nobody, and the RLM rightly does not count its tokens).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from pydantic import BaseModel

__all__ = ["Exchange", "RecordingProxy"]

# Headers that describe one hop, not the message (RFC 9110 7.6.1); never forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"}
_SETTLE_S = 5.0


class Exchange(BaseModel):
    """One request and the server's answer, as seen on the wire."""

    method: str
    path: str
    status: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    """The server's error message, for answers >= 400."""
    delivered: bool
    """False when the client had hung up before the answer came."""
    duration_s: float

    @property
    def is_chat(self) -> bool:
        return self.method == "POST" and self.path.rstrip("/").endswith("/chat/completions")


def _client_gone(sock: socket.socket) -> bool:
    # A peer that closed its end makes the socket readable with nothing to read.
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class RecordingProxy:
    """Forward http://127.0.0.1:<port>/... to `upstream`, recording every exchange."""

    def __init__(self, upstream: str, timeout_s: float = 900) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        # Signalled whenever a request finishes, so readers wait for recording, not poll.
        self._settled = threading.Condition(self._lock)
        self._active = 0
        self._exchanges: list[Exchange] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-proxy", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def exchanges(self) -> list[Exchange]:
        # A client holds its answer a moment before the handler records the exchange;
        # settle first so a reader right after a call sees that call.
        self.wait_idle(timeout_s=_SETTLE_S)
        with self._lock:
            return list(self._exchanges)

    def chat_exchanges(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.is_chat]

    def wait_idle(self, timeout_s: float) -> None:
        """Wait for requests still being answered upstream (abandoned ones) to be recorded."""
        with self._settled:
            self._settled.wait_for(lambda: self._active == 0, timeout=timeout_s)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                with proxy._lock:
                    proxy._active += 1
                try:
                    self._relay()
                finally:
                    with proxy._settled:
                        proxy._active -= 1
                        proxy._settled.notify_all()

            def _relay(self) -> None:
                started = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=proxy._timeout_s)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    payload = answer.read()
                    status = answer.status
                    content_type = answer.getheader("Content-Type", "application/json")
                except (OSError, http.client.HTTPException) as exc:
                    # The server went away (e.g. stopped at the end of the session).
                    status, content_type = 502, "application/json"
                    payload = json.dumps({"error": {"message": f"proxy: upstream failed: {exc!r}"}}).encode()
                finally:
                    upstream.close()
                exchange = {"method": self.command, "path": self.path, "status": status}
                try:
                    parsed = json.loads(payload)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    usage = parsed.get("usage") or {}
                    exchange["prompt_tokens"] = usage.get("prompt_tokens")
                    exchange["completion_tokens"] = usage.get("completion_tokens")
                    choices = parsed.get("choices") or [{}]
                    exchange["finish_reason"] = choices[0].get("finish_reason")
                    if status >= 400:
                        error = parsed.get("error")
                        exchange["error"] = str(error.get("message") if isinstance(error, dict) else error or parsed)
                delivered = not _client_gone(self.connection)
                if delivered:
                    try:
                        self.send_response(status)
                        self.send_header("Content-Type", content_type)
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        self.wfile.flush()
                    except OSError:
                        delivered = False
                proxy._record(Exchange(**exchange, delivered=delivered, duration_s=time.monotonic() - started))
                if not delivered:
                    self.close_connection = True

        return Handler
