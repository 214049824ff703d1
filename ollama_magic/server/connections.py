"""Connections that cost a thread only while a request is being served.

A thread per connection (what ``ThreadingHTTPServer`` does) lets anyone who opens sockets and
sends half a request pin one thread each, for ever. Here one loop (:meth:`ConnectionServer.
serve_forever`) accepts connections and reads request heads without blocking, for many sockets
at once; only a connection whose head is complete goes to one of at most ``max_workers``
threads. Heads that do not arrive within ``read_timeout`` (``idle_timeout`` on a kept-alive
connection that has sent nothing yet) are dropped, and past ``max_pending`` waiting connections
the oldest is dropped, so a flood of half-open sockets can neither exhaust threads nor lock out
a normal client. After a response, a kept-alive connection goes back to the loop, not to sleep
on a thread. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import re
import selectors
import socket
import socketserver
import threading
import time
from typing import Any

HEAD_LIMIT = 1 << 20
"""Longest request head (request line and headers) accepted: Go's ``DefaultMaxHeaderBytes``."""

HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n431 Request Header Fields Too Large"
)
"""What Go's server writes for a head over the limit."""

_END_OF_HEAD = re.compile(rb"\n\r?\n")
_RECV_SIZE = 65536
_ACCEPT_BURST = 64  # connections accepted per wake-up, so a burst does not wait on select
_SWEEP_EVERY = 0.25  # seconds between deadline sweeps of the waiting connections


class Connection:
    """An accepted socket and the bytes already read from it but not yet used."""

    def __init__(self, sock: socket.socket, address: Any, buffered: bytes = b"") -> None:
        self.sock, self.address = sock, address
        self.buffer = bytearray(buffered)
        self.deadline = 0.0
        self._searched = 0  # the end of head cannot start before here (so a trickle costs O(n))

    def head_complete(self) -> bool:
        found = _END_OF_HEAD.search(self.buffer, max(0, self._searched - 2)) is not None
        self._searched = len(self.buffer)
        return found


class SocketReader:
    """The ``rfile`` of a handler: the buffered bytes first, then the (blocking) socket.

    Unlike ``socket.makefile``, what it has read ahead can be handed back (:meth:`pending`),
    so a kept-alive connection returns to the loop without losing a pipelined request.
    """

    def __init__(self, connection: Connection) -> None:
        self._sock = connection.sock
        self._buffer = connection.buffer
        self.closed = False

    def _fill(self) -> bool:
        data = self._sock.recv(_RECV_SIZE)
        self._buffer += data
        return bool(data)

    def readline(self, limit: int = -1) -> bytes:
        """Up to and including ``\\n``, at most ``limit`` bytes; short only at end of input."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                return self._take(end + 1 if limit < 0 else min(end + 1, limit))
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            start = len(self._buffer)
            if not self._fill():
                return self._take(len(self._buffer))

    def read(self, size: int = -1) -> bytes:
        """Exactly ``size`` bytes (all until end of input if negative); short only at the end."""
        while size < 0 or len(self._buffer) < size:
            if not self._fill():
                break
        return self._take(len(self._buffer) if size < 0 else min(size, len(self._buffer)))

    def _take(self, count: int) -> bytes:
        with memoryview(self._buffer) as view:
            data = bytes(view[:count])  # one copy, even of a body of many MB
        del self._buffer[:count]
        return data

    def pending(self) -> bytes:
        """What was read ahead and not used: the start of the next (pipelined) request."""
        return bytes(self._buffer)

    def close(self) -> None:
        self.closed = True  # the socket belongs to the server, which closes or keeps it


def discard_input(sock: socket.socket, seconds: float) -> None:
    """Read and throw away what the client still sends, until it closes or ``seconds`` pass.

    After an early answer (a 413 before the body was read), closing a socket with unread bytes
    makes the kernel send a reset, and a client still writing its body would see that instead
    of the answer; reading the rest first lets it finish writing and read the reply.
    """
    sink = bytearray(_RECV_SIZE)
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not sock.recv_into(sink):
                return


class ConnectionServer(socketserver.TCPServer):
    """A TCP server that reads request heads in one loop and serves requests on a few threads.

    Subclasses implement :meth:`serve_connection` (run on a worker thread, with the head in
    ``connection.buffer``) and call :meth:`keep` to hand an idle kept-alive connection back.
    """

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: Any,
        *,
        read_timeout: float,
        idle_timeout: float,
        max_pending: int,
        max_workers: int,
    ) -> None:
        self.read_timeout, self.idle_timeout = read_timeout, idle_timeout
        self.max_pending, self.max_workers = max_pending, max_workers
        self._waiting: dict[socket.socket, Connection] = {}  # oldest first; loop thread only
        self._returned: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._queued = 0  # connections in _ready that no worker has taken yet
        self._workers_lock = threading.Lock()
        self._stop_loop = threading.Event()
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        super().__init__(address, handler)

    # -- what subclasses implement -------------------------------------------------------------

    def serve_connection(self, connection: Connection) -> bool:
        """Serve one request (or more) of ``connection``; True if it was handed to :meth:`keep`."""
        raise NotImplementedError

    # -- the loop ------------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept, read heads and dispatch until :meth:`shutdown`."""
        self._stop_loop.clear()
        self._loop_done.clear()
        self.socket.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        next_sweep = time.monotonic() + _SWEEP_EVERY
        try:
            while not self._stop_loop.is_set():
                for key, _ in selector.select(min(poll_interval, _SWEEP_EVERY)):
                    if key.fileobj is self.socket:
                        self._accept(selector)
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(_RECV_SIZE)
                    else:
                        self._read_head(selector, self._waiting[key.fileobj])  # type: ignore[index]
                while True:
                    try:
                        returned = self._returned.get_nowait()
                    except queue.Empty:
                        break
                    self._wait_for_head(selector, returned, self.idle_timeout)
                if time.monotonic() >= next_sweep:
                    self._drop_expired(selector)
                    next_sweep = time.monotonic() + _SWEEP_EVERY
        finally:
            for connection in list(self._waiting.values()):
                self._close(selector, connection)
            selector.close()
            self._loop_done.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has returned (from another thread)."""
        self._stop_loop.set()
        self._wake()
        self._loop_done.wait()

    def server_close(self) -> None:
        super().server_close()
        while True:  # kept-alive connections handed back as the loop stopped
            try:
                self.shutdown_request(self._returned.get_nowait().sock)
            except queue.Empty:
                break
        with self._workers_lock:
            count = len(self._workers)
        for _ in range(count):
            self._ready.put(None)
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def keep(self, connection: Connection) -> bool:
        """Give a kept-alive connection back to the loop, to wait for its next request."""
        if self._stop_loop.is_set():
            return False
        self._returned.put(connection)
        self._wake()
        return True

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _accept(self, selector: selectors.BaseSelector) -> None:
        for _ in range(_ACCEPT_BURST):
            try:
                sock, address = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._drop_oldest(selector)  # out of descriptors: make room for newcomers
                return
            self._wait_for_head(selector, Connection(sock, address), self.read_timeout)

    def _wait_for_head(
        self, selector: selectors.BaseSelector, connection: Connection, timeout: float
    ) -> None:
        if connection.head_complete():  # a pipelined request: no need to wait
            self._dispatch(connection)
            return
        if len(self._waiting) >= self.max_pending:
            self._drop_oldest(selector)
        connection.sock.setblocking(False)
        connection.deadline = time.monotonic() + timeout
        self._waiting[connection.sock] = connection
        selector.register(connection.sock, selectors.EVENT_READ)

    def _read_head(self, selector: selectors.BaseSelector, connection: Connection) -> None:
        try:
            data = connection.sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away (or reset the connection)
            self._close(selector, connection)
            return
        if not connection.buffer:  # the first byte of a request: it has read_timeout from now
            connection.deadline = min(connection.deadline, time.monotonic() + self.read_timeout)
        connection.buffer += data
        if connection.head_complete():
            self._unwatch(selector, connection)
            self._dispatch(connection)
        elif len(connection.buffer) > HEAD_LIMIT:
            with contextlib.suppress(OSError):
                connection.sock.send(HEAD_TOO_LARGE)
            self._close(selector, connection)

    def _drop_expired(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for connection in [c for c in self._waiting.values() if c.deadline <= now]:
            self._close(selector, connection)

    def _drop_oldest(self, selector: selectors.BaseSelector) -> None:
        if self._waiting:
            self._close(selector, next(iter(self._waiting.values())))

    def _unwatch(self, selector: selectors.BaseSelector, connection: Connection) -> None:
        del self._waiting[connection.sock]
        selector.unregister(connection.sock)

    def _close(self, selector: selectors.BaseSelector, connection: Connection) -> None:
        self._unwatch(selector, connection)
        self.shutdown_request(connection.sock)

    # -- workers -------------------------------------------------------------------------------

    def _dispatch(self, connection: Connection) -> None:
        """Queue a connection with a complete head; start a worker if none is idle."""
        with self._workers_lock:
            self._queued += 1
            self._ready.put(connection)
            if self._queued > self._idle_workers and len(self._workers) < self.max_workers:
                worker = threading.Thread(
                    target=self._work, name=f"ollama-magic-worker-{len(self._workers)}", daemon=True
                )
                self._workers.append(worker)
                self._idle_workers += 1
                worker.start()

    def _work(self) -> None:
        while True:
            connection = self._ready.get()
            if connection is None:
                return
            with self._workers_lock:
                self._idle_workers -= 1
                self._queued -= 1
            try:
                kept = False
                connection.sock.setblocking(True)
                kept = self.serve_connection(connection)
            except Exception:
                self.handle_error(connection.sock, connection.address)
            finally:
                if not kept:
                    self.shutdown_request(connection.sock)
                with self._workers_lock:
                    self._idle_workers += 1
