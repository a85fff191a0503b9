"""A TCP proxy that a test can cut and restore, to simulate a broker outage.

The embedded broker keeps its log in memory, so stopping it would lose every record;
an outage is simulated instead by putting :class:`TcpProxy` between the client and
the broker (the broker advertises the proxy's port) and cutting the proxy: live
connections are closed and new ones are refused, while the broker itself keeps
running and keeps its data.

With ``http_connect=True`` the proxy also answers an HTTP ``CONNECT`` request at the
start of each connection (what kafka-python's ``proxy_url="http://..."`` sends) and
then forwards to its fixed target whatever address was asked for. Tests use that as
a side door to the broker: a producer given ``proxy_url`` reaches the broker even
for the advertised (cut) address.

With ``tls`` (a server-side :class:`ssl.SSLContext`) the proxy terminates TLS in front
of the plaintext broker: the embedded broker has no working TLS listener, and this is
how a test gets a Kafka endpoint whose certificate a client may or may not trust.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from types import TracebackType

__all__ = ["TcpProxy"]

_ACCEPT_POLL_S = 0.05
_CHUNK = 64 * 1024
_MAX_CONNECT_HEADER = 64 * 1024


class TcpProxy:
    """Forwards every connection accepted on ``host:port`` to ``target``.

    ``port=0`` picks a free port once, at construction; :meth:`restore` listens on
    that same port again, so an address handed to a client stays valid across cuts.
    """

    def __init__(
        self, target: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0, http_connect: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.target = target
        self.host = host
        self.http_connect = http_connect
        self.tls = tls
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Event | None = None
        self._acceptor: threading.Thread | None = None
        self.port = port
        self.restore()

    @property
    def address(self) -> str:
        """``host:port`` for a client's ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port``, for kafka-python's ``proxy_url`` (needs ``http_connect=True``)."""
        return f"http://{self.address}"

    @property
    def listening(self) -> bool:
        return self._listener is not None

    # ------------------------------------------------------------------ control

    def restore(self) -> None:
        """Listen (again) on the proxy's port and forward new connections; no-op if listening."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(_ACCEPT_POLL_S)
        self.port = int(listener.getsockname()[1])
        accepting = threading.Event()
        accepting.set()
        self._listener, self._accepting = listener, accepting
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener, accepting), name=f"proxy-accept-{self.port}", daemon=True
        )
        self._acceptor.start()

    def cut(self) -> None:
        """Stop listening (connects are refused) and close every live connection; idempotent."""
        listener, accepting, acceptor = self._listener, self._accepting, self._acceptor
        self._listener = self._accepting = self._acceptor = None
        if accepting is not None:
            accepting.clear()
        if acceptor is not None:
            acceptor.join(timeout=5)
        if listener is not None:
            listener.close()
        with self._lock:
            live, self._sockets = self._sockets, set()
        for sock in live:
            _close(sock)

    def close(self) -> None:
        """Cut for good."""
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ forwarding

    def _accept_loop(self, listener: socket.socket, accepting: threading.Event) -> None:
        while accepting.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if not accepting.is_set():  # cut while this connection was being accepted
                _close(client)
                return
            threading.Thread(target=self._open, args=(client,), name="proxy-open", daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        if not self._track(client):
            return
        try:
            if self.http_connect:
                _answer_connect(client)
            if self.tls is not None:
                plain = client
                client.settimeout(10)
                client = self.tls.wrap_socket(client, server_side=True)  # the handshake; a distrusting client aborts it
                client.settimeout(None)
                with self._lock:
                    self._sockets.discard(plain)  # detached by wrap_socket: the TLS socket owns the descriptor now
                if not self._track(client):
                    return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:  # ssl.SSLError included
            self._untrack(client)
            return
        if not self._track(upstream):
            self._untrack(client)
            return
        if isinstance(client, ssl.SSLSocket):
            # One OpenSSL connection must not be read and written from two threads at once.
            threading.Thread(target=self._pump_both, args=(client, upstream), name="proxy-pump", daemon=True).start()
            return
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), name="proxy-pump", daemon=True).start()

    def _pump_both(self, secure: ssl.SSLSocket, upstream: socket.socket) -> None:
        """Both directions on one thread (for a TLS client side)."""
        try:
            while True:
                readable = [secure] if secure.pending() else select.select([secure, upstream], [], [], 0.5)[0]
                for source in readable:
                    chunk = source.recv(_CHUNK)
                    if not chunk:
                        raise ConnectionError("closed")
                    (upstream if source is secure else secure).sendall(chunk)
        except (OSError, ValueError):
            pass
        self._untrack(secure)
        self._untrack(upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(_CHUNK):
                sink.sendall(chunk)
        except OSError:
            pass
        # One side is done: tear the pair down, as a broker closing a connection would.
        self._untrack(source)
        self._untrack(sink)

    def _track(self, sock: socket.socket) -> bool:
        """Register a live socket; refuse (and close it) when the proxy is cut."""
        with self._lock:
            if self._listener is not None:
                self._sockets.add(sock)
                return True
        _close(sock)
        return False

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)


def _answer_connect(client: socket.socket) -> None:
    """Consume an HTTP CONNECT request and accept it (the target is fixed, not the one asked for)."""
    header = b""
    while b"\r\n\r\n" not in header:
        chunk = client.recv(4096)
        if not chunk or len(header) > _MAX_CONNECT_HEADER:
            raise ConnectionError("no complete HTTP CONNECT request")
        header += chunk
    if not header.startswith(b"CONNECT "):
        client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
        raise ConnectionError(f"expected CONNECT, got {header.splitlines()[0]!r}")
    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
