"""The service's listening sockets: one per worker, on one port, with SO_REUSEPORT.

Workers accepting from one shared socket split keep-alive connections unevenly: whichever wakes
first takes a whole burst, and a proxy's few long-lived connections can all land on one worker
while the others idle (measured: wrk's 16 connections on one of two workers, half the req/s). With
SO_REUSEPORT the kernel spreads new connections over the workers' own sockets by a hash of each
connection's addresses. gunicorn and uvicorn's supervisors share one socket, which is why the
supervisor here is our own.

Each slot's socket lives in its worker alone: when the worker dies the kernel closes it, and new
connections go to the live workers at once instead of queueing on a socket nobody accepts from.
The supervisor keeps a bound, non-listening "anchor" on the port so that it stays ours while every
worker restarts; a socket that only binds never receives connections.
"""

from __future__ import annotations

import socket

BACKLOG = 2048


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def bound(host: str, port: int) -> socket.socket:
    """A socket bound to the port's SO_REUSEPORT group but not yet listening: uvicorn calls listen()
    as it starts serving, so no connection queues on it before its worker's event loop runs
    (listening first left 100-370 ms waits for connections that arrived in between)."""
    sock = _socket(host, port, reuse_port=True)
    sock.set_inheritable(True)
    return sock


def listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening socket on `host:port`, joining the port's other workers when `reuse_port`."""
    sock = _socket(host, port, reuse_port=reuse_port)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT anchor that keeps `port` ours (0: a free one) while the
    workers open and close their own listening sockets on it; refused if anyone else holds it."""
    with _socket(host, port, reuse_port=False) as probe:
        port = probe.getsockname()[1]
    return _socket(host, port, reuse_port=True)


class Listeners:
    """The anchor plus one listening socket per initial worker; `port` is the one bound.

    The gRPC port has an anchor only: each worker binds its own listening socket on it
    (SO_REUSEPORT, transport/grpc_server.py) once it may serve, a replacement once warm.
    """

    def __init__(self, host: str, port: int, count: int, grpc_port: int = 0) -> None:
        self.grpc_anchor = reserve(host, grpc_port) if grpc_port else None
        self.grpc_port = self.grpc_anchor.getsockname()[1] if self.grpc_anchor else 0
        try:
            self._open(host, port, count)
        except BaseException:
            if self.grpc_anchor is not None:
                self.grpc_anchor.close()
            raise

    def _open(self, host: str, port: int, count: int) -> None:
        self.reuse_port = hasattr(socket, "SO_REUSEPORT")
        if not self.reuse_port:  # one shared socket, as gunicorn does, where the kernel has no SO_REUSEPORT
            self.anchor = listen(host, port, reuse_port=False)
            self.port = self.anchor.getsockname()[1]
            self.slots: list[socket.socket | None] = [self.anchor] * count
            return
        # SO_REUSEPORT would also let this service join another one already listening on the
        # port (the same user's second `diabetes serve`, say): a plain bind first says it is taken.
        self.anchor = reserve(host, port)  # port 0 picks a free port once; the others join it
        self.port = port = self.anchor.getsockname()[1]
        self.slots = []
        try:
            for _ in range(count):
                self.slots.append(listen(host, port, reuse_port=True))
        except BaseException:
            self.close()
            raise

    def handed_over(self, slot: int) -> None:
        """The slot's worker has its socket: the supervisor lets go of its own reference."""
        sock = self.slots[slot]
        if self.reuse_port and sock is not None:
            sock.close()
            self.slots[slot] = None

    def for_replacement(self) -> socket.socket | None:
        """None: a replacement opens its own socket once warm; the shared one without SO_REUSEPORT."""
        return None if self.reuse_port else self.anchor

    def close(self) -> None:
        for sock in {*self.slots, self.anchor, self.grpc_anchor}:
            if sock is not None:
                sock.close()
