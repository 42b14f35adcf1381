"""Byte transports between the host and a sandbox's stdin/stdout.

Both give the same operations to the session layer: `send(data, timeout)`, `receive(timeout)`
(returns the next bytes of the sandbox's stdout, b"" at end of stream, None on timeout)
and `close()`. What the sandbox writes to its original stderr (only the server's own
start-up or fatal errors; user output is captured elsewhere) is kept, capped, in
`diagnostics` for error messages.
"""

from __future__ import annotations

import os
import select
import selectors
import socket
import ssl
import struct
import subprocess
import time

DIAGNOSTICS_CAP = 64 * 1024
_RECV_BYTES = 1 << 20
# A non-blocking socket (plain or TLS) that is not ready yet: wait and try again.
_NOT_READY = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, socket.timeout)


class _Diagnostics:
    def __init__(self) -> None:
        self._data = bytearray()

    def add(self, data: bytes | memoryview) -> None:
        room = DIAGNOSTICS_CAP - len(self._data)
        if room > 0:
            self._data += data[:room]

    def text(self) -> str:
        return self._data.decode("utf-8", "replace").strip()


class _TransportBase:
    def __init__(self) -> None:
        self._diagnostics = _Diagnostics()
        self._eof = False

    @property
    def diagnostics(self) -> str:
        return self._diagnostics.text()


class AttachSocketTransport(_TransportBase):
    """A hijacked Docker attach connection of a container started without a TTY.

    Docker multiplexes stdout and stderr on it as frames of an 8-byte header (stream
    id, 3 zero bytes, big-endian length) and a payload; writes go to stdin raw.
    """

    _MUX_HEADER = struct.Struct(">BxxxI")

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._sock.setblocking(False)
        self._mux = bytearray()

    def send(self, data: bytes | memoryview, timeout: float | None = None) -> None:
        # A paused or wedged sandbox stops reading; the timeout turns that into an
        # OSError (socket.timeout) instead of a host thread blocked for ever. The socket
        # stays non-blocking and each direction waits in select(), so answers sent from
        # worker threads never change the timeout of the exec loop's receive.
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        while view:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            _, writable, _ = select.select([], [self._sock], [], remaining)
            if not writable:
                raise TimeoutError("the sandbox stopped reading its input")
            try:
                view = view[self._sock.send(view) :]
            except _NOT_READY:
                continue

    def receive(self, timeout: float | None) -> bytes | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            stdout = self._demux()
            if stdout:
                return stdout
            if self._eof:
                return b""
            pending = getattr(self._sock, "pending", None)  # TLS: bytes already decrypted
            if not (pending and pending()):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                readable, _, _ = select.select([self._sock], [], [], remaining)
                if not readable:
                    return None
            try:
                data = self._sock.recv(_RECV_BYTES)
            except _NOT_READY:
                continue
            except OSError:
                data = b""
            if data:
                self._mux += data
            else:
                self._eof = True

    def _demux(self) -> bytes:
        """Take every complete mux frame out of the buffer; return the stdout payloads."""
        mux = self._mux
        out = bytearray()
        offset = 0
        while len(mux) - offset >= 8:
            stream, length = self._MUX_HEADER.unpack_from(mux, offset)
            if len(mux) - offset - 8 < length:
                break
            payload = memoryview(mux)[offset + 8 : offset + 8 + length]
            if stream == 1:
                out += payload
            else:
                self._diagnostics.add(payload)
            payload.release()
            offset += 8 + length
        if offset:
            del mux[:offset]
        return bytes(out)

    def close_input(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


class PipeTransport(_TransportBase):
    """The stdin/stdout/stderr pipes of a local subprocess."""

    def __init__(self, process: subprocess.Popen) -> None:
        super().__init__()
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        self._process = process
        self._stdin = process.stdin.fileno()
        # Non-blocking so a send with a timeout can never block inside os.write.
        os.set_blocking(self._stdin, False)
        self._stdout = process.stdout.fileno()
        self._stderr = process.stderr.fileno()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stdout, selectors.EVENT_READ)
        self._selector.register(self._stderr, selectors.EVENT_READ)

    def send(self, data: bytes | memoryview, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        while view:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            _, writable, _ = select.select([], [self._stdin], [], remaining)
            if not writable:
                raise TimeoutError("the sandbox stopped reading its input")
            try:
                view = view[os.write(self._stdin, view) :]
            except BlockingIOError:
                continue

    def receive(self, timeout: float | None) -> bytes | None:
        if self._eof:
            return b""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            events = self._selector.select(remaining)
            if not events:
                return None
            for key, _ in events:
                data = os.read(key.fd, _RECV_BYTES)
                if key.fd == self._stderr:
                    if data:
                        self._diagnostics.add(data)
                    else:
                        self._selector.unregister(self._stderr)
                    continue
                if not data:
                    self._eof = True
                    self._drain_stderr()
                return data

    def _drain_stderr(self) -> None:
        """Keep what the process said on its way out (bounded in time and size)."""
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._stderr], [], [], max(deadline - time.monotonic(), 0.0))
            if not ready:
                return
            data = os.read(self._stderr, _RECV_BYTES)
            if not data:
                return
            self._diagnostics.add(data)

    def close_input(self) -> None:
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except OSError:
            pass

    def close(self) -> None:
        self.close_input()
        self._selector.close()
        for stream in (self._process.stdout, self._process.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
