"""A TCP proxy between a test's clients and PostgreSQL, with faults the test controls, so that a
test can break connections without touching the server everyone else's tests use.

- ``cut()`` closes every connection through the proxy, both sides, as a restart of the server
  does (the clients see their connection closed; the server's backends end).
- ``refusing()`` closes the proxy's port for a block: new connections are refused, as by a server
  that is down. Connections already open are left alone (cut them first for a restart).
- ``freeze(predicate)`` stops forwarding, in both directions, on every connection whose client
  has sent bytes that ``predicate`` accepts (e.g. ``lambda sent: b"LISTEN" in sent``), now or
  later (with ``later=False``, now only), until ``thaw()``: like a backend that hangs, or a
  network that drops packets without a reset. No socket is closed; what was in flight is held
  and forwarded after ``thaw()``.

Clients connect with ``proxy.url(database_url)``: the same URL with the proxy's address and
``sslmode=disable``, so the proxy sees the protocol's bytes in the clear. ::

    with Proxy(database_url) as proxy:
        runtime = jobkit_runtime_factory(database_url=proxy.url(database_url))
        ...
        proxy.cut()
        with proxy.refusing():
            ...
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator

SENT_KEPT = 1 << 20
"""How many of the latest bytes each client sent the proxy keeps for ``freeze`` predicates."""

Predicate = Callable[[bytes], bool]


class _Link:
    """One client's connection and the proxy's connection to the server for it, forwarded by a
    thread of its own."""

    def __init__(self, client: socket.socket, server: socket.socket):
        self.client = client
        self.server = server
        self.sent = b""
        self.frozen = False
        self.ending = False
        self._held: list[tuple[socket.socket, bytes]] = []
        self._wake_read, self._wake_write = socket.socketpair()
        self._lock = threading.Lock()
        self._closed = False

    def wake(self) -> None:
        """Make the forwarding thread look at ``frozen`` and ``ending`` again."""
        with self._lock:
            if not self._closed:
                self._wake_write.send(b"x")

    def forward(self, frozen_by: Callable[[], Predicate | None], ended: Callable[[], None]) -> None:
        """Copy bytes both ways until either side closes or the link is cut; while frozen,
        read nothing (so the kernel's buffers fill up, as with a hung peer)."""
        peers = {self.client: self.server, self.server: self.client}
        selector = selectors.DefaultSelector()
        selector.register(self._wake_read, selectors.EVENT_READ, self._wake_read)
        watching = False
        try:
            while not self.ending:
                if watching == self.frozen:
                    watching = not self.frozen
                    for sock in peers:
                        if watching:
                            selector.register(sock, selectors.EVENT_READ, sock)
                        else:
                            selector.unregister(sock)
                if watching and self._held:
                    for target, data in self._held:
                        target.sendall(data)
                    self._held.clear()
                for key, _ in selector.select():
                    sock = key.data
                    if sock is self._wake_read:
                        sock.recv(1024)
                        continue
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is self.client:
                        self.sent = (self.sent + data)[-SENT_KEPT:]
                        predicate = frozen_by()
                        if predicate is not None and predicate(self.sent):
                            self.frozen = True
                    if self.frozen:
                        self._held.append((peers[sock], data))
                        break
                    peers[sock].sendall(data)
        except OSError:
            return  # a socket was reset or closed under us: the link is over
        finally:
            selector.close()
            self.close()
            ended()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for sock in (self.client, self.server, self._wake_read, self._wake_write):
            sock.close()


class Proxy:
    """Listens on a free port of 127.0.0.1 and forwards each connection to the server of
    ``database_url``. Use it as a context manager, or call ``close()``."""

    def __init__(self, database_url: str):
        parts = urllib.parse.urlsplit(database_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._predicate: Predicate | None = None
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._accepting = threading.Event()
        self._accepting.set()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def url(self, database_url: str) -> str:
        """``database_url`` through the proxy, with ``sslmode=disable``."""
        parts = urllib.parse.urlsplit(database_url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        query = [
            (name, value)
            for name, value in urllib.parse.parse_qsl(parts.query)
            if name not in ("sslmode", "host", "hostaddr", "port")
        ]
        query.append(("sslmode", "disable"))
        return urllib.parse.urlunsplit(
            parts._replace(netloc=netloc, query=urllib.parse.urlencode(query))
        )

    # Faults ----------------------------------------------------------------------------------

    def cut(self) -> int:
        """Close every connection through the proxy, both sides; return how many there were."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.ending = True
            link.wake()
        return len(links)

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Refuse new connections (the port is closed) for the block."""
        self._accepting.clear()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join()
        self._listener.close()
        try:
            yield
        finally:
            self._listener = self._listen(self.port)
            self._accepting.set()
            self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
            self._acceptor.start()

    def freeze(self, predicate: Predicate, *, later: bool = True) -> None:
        """Stop forwarding on every connection whose client sent bytes ``predicate`` accepts
        (it is given up to the last ``SENT_KEPT`` bytes the client sent), now and (unless
        ``later`` is false: only the connections open now) for each new byte a client sends,
        until ``thaw()``."""
        if later:
            self._predicate = predicate
        with self._lock:
            links = list(self._links)
        for link in links:
            if predicate(link.sent):
                link.frozen = True
                link.wake()

    def thaw(self) -> None:
        """Forward again on every frozen connection, held bytes first."""
        self._predicate = None
        with self._lock:
            links = list(self._links)
        for link in links:
            if link.frozen:
                link.frozen = False
                link.wake()

    # State -----------------------------------------------------------------------------------

    def connections(self) -> int:
        """How many connections are open through the proxy."""
        with self._lock:
            return len(self._links)

    def frozen(self) -> int:
        """How many of them are frozen."""
        with self._lock:
            return sum(link.frozen for link in self._links)

    def close(self) -> None:
        """Stop listening and cut every connection."""
        self._closed = True
        self._accepting.clear()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()

    # Inside ----------------------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        return listener

    def _accept(self) -> None:
        listener = self._listener
        while self._accepting.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was shut down: refusing() or close()
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, server)
            with self._lock:
                if self._closed:
                    link.close()
                    return
                self._links.add(link)
            threading.Thread(
                target=link.forward,
                args=(lambda: self._predicate, lambda link=link: self._forget(link)),
                name=f"proxy-link-{self.port}",
                daemon=True,
            ).start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
