"""The service's listening sockets: one per worker slot, on one port, with SO_REUSEPORT.

Workers accepting from one shared socket split keep-alive connections unevenly: whichever wakes
first takes a whole burst, and a proxy's few long-lived connections can all land on one worker
while the others idle. Measured with wrk's 16 kept-alive connections on GET / (2 workers, 3 rounds
each, same minutes): one shared socket put 16/0, 15/1 and 15/1 of them on one worker, 6,287, 9,717
and 11,426 req/s; a socket per slot split them 9/7, 5/11, 7/9, 12,876, 12,533 and 13,850 req/s.
With SO_REUSEPORT the kernel spreads new connections over the slots' sockets by a hash of each
connection's addresses. gunicorn and uvicorn's supervisors share one socket, which is why the
supervisor here is our own.

The supervisor keeps every slot's socket open for the service's life, so that a worker's death
(SIGKILL, OOM, a heartbeat kill) does not close it: the kernel would reset the connections queued
on it. Before, on this 2-core machine's default settings, the `kill` fault case (three kills a
run) saw resets in 5 of 7 runs at load averages 8-13 (in one, 22 of the 60 connections made right
after the kills), none in 3 runs at 17-20. The live workers adopt the dead worker's socket at once
(adoption.py) and accept from it until its replacement, handed the same socket, serves: no
connection made after a kill failed in 18 runs (54 kills), and no throughput lost (1-row /score
A/B: 105.6% and 115.0% of the code before; nothing extra is done while every worker lives).
Connections the dead worker had already taken die with it: a client's retry (diabetes_client's)
covers those. Where no live worker can adopt the socket (a single worker, all of them down) it is
closed as before, and the replacement gets a socket that is only bound, listening once its event
loop serves (listening first left 100-370 ms waits). The kernel's own remedy,
`net.ipv4.tcp_migrate_req=1` (Linux 5.14: a closed socket's queue moves to a live one in its
group), also gave no failure in 6 runs, but it is off by default and settable only in a network
namespace of the service's own (Docker's `--sysctl`, a pod's `securityContext.sysctls`, an
"unsafe" sysctl the kubelet must allow), never on a bare host's shared one; with adoption it has
nothing left to move.
The supervisor also keeps a bound, non-listening "anchor" on the port so that it stays ours; a
socket that only binds never receives connections.
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
    """The anchor plus one listening socket per worker slot; `port` is the one bound.

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

    def for_replacement(self, slot: int, host: str) -> socket.socket:
        """The socket a slot's replacement serves: the dead worker's, kept with its queue, or (once
        closed by `drop`) a new one, only bound. The shared one without SO_REUSEPORT."""
        sock = self.slots[slot]
        if sock is None:
            sock = self.slots[slot] = bound(host, self.port)
        return sock

    def drop(self, slot: int) -> None:
        """Nobody can accept from the slot's socket until its replacement serves: close it, so that
        new connections go to the live sockets (or are refused) rather than wait on it."""
        sock = self.slots[slot]
        if self.reuse_port and sock is not None:
            sock.close()
            self.slots[slot] = None

    def close_slots(self) -> None:
        """The service stops: once the workers close their copies, new connections are refused."""
        for slot in range(len(self.slots)):
            self.drop(slot)

    def close(self) -> None:
        for sock in {*self.slots, self.anchor, self.grpc_anchor}:
            if sock is not None:
                sock.close()
