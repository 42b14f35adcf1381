"""A byte-for-byte proxy in front of the Docker daemon's socket, that a test can stop and start.

Stopping it is a real outage of the Docker API from the client's point of view (the
socket disappears, every open connection, attach streams included, is cut) without
touching the real daemon, which other processes on the machine keep using. Freezing
it is a hung daemon: connections are accepted and never answered, and open ones stop
moving, until it thaws.
"""

from __future__ import annotations

import os
import socket
import threading


class DockerSocketProxy:
    def __init__(self, path: str, upstream: str = "/var/run/docker.sock") -> None:
        self.path = str(path)
        self.upstream = upstream
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> DockerSocketProxy:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(256)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="docker-proxy", daemon=True).start()
        return self

    def freeze(self) -> None:
        """The daemon hangs: it accepts connections and never answers, and no byte moves."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        """The outage: no listener any more, and every connection cut."""
        with self._lock:
            listener, self._listener = self._listener, None
            cut, self._open = self._open, set()
        if listener is not None:
            listener.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        for sock in cut:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self._open.add(client)
            threading.Thread(
                target=self._connect, args=(listener, client), name="docker-proxy-connect", daemon=True
            ).start()

    def _connect(self, listener: socket.socket, client: socket.socket) -> None:
        self._flowing.wait()  # a frozen daemon holds the connection, unanswered
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.upstream)
        except OSError:
            client.close()
            upstream.close()
            return
        with self._lock:
            if self._listener is not listener:
                client.close()
                upstream.close()
                return
            self._open.update((client, upstream))
            self.connections += 1
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), name="docker-proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(1 << 16)
                self._flowing.wait()
                if not data:
                    sink.shutdown(socket.SHUT_WR)  # pass a half-close on (StdinOnce relies on it)
                    return
                sink.sendall(data)
        except OSError:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
