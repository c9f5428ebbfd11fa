"""Live workers accept from a dead worker's socket until its replacement serves it.

The supervisor keeps every slot's listening socket (listeners.py), so connections queued on a
worker's socket outlive the worker; somebody must accept them at once, not 0.1-0.6 s later when
the replacement has loaded the model. Each worker gets one end of a SOCK_SEQPACKET socketpair at
its fork; when a worker ends, the supervisor sends every warm worker the dead slot's socket
(SCM_RIGHTS) with ADOPT, and each serves it beside its own, through uvicorn's own protocol, until
RELEASE (the replacement's event loop beats). A message is a letter and the slot's number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable

ADOPT = b"A"
RELEASE = b"R"
_MESSAGE = struct.Struct("<cH")

log = logging.getLogger("diabetes_service")


def channel() -> tuple[socket.socket, socket.socket]:
    """(the supervisor's end, the worker's end), made before the fork."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)  # a worker that is not reading never holds up the supervisor
    return ours, theirs


def send(end: socket.socket, verb: bytes, slot: int, sock: socket.socket | None = None) -> bool:
    """Tell a worker; False when it cannot hear (gone, or not reading: its buffer is full)."""
    try:
        socket.send_fds(end, [_MESSAGE.pack(verb, slot)], [sock.fileno()] if sock is not None else [])
    except OSError:
        return False
    return True


class Adopter:
    """The worker's side: serve adopted sockets on the running loop with `protocol_factory`."""

    def __init__(self, end: socket.socket, protocol_factory: Callable[[], asyncio.Protocol], backlog: int) -> None:
        self.end = end
        self.protocol_factory = protocol_factory
        self.backlog = backlog
        self.servers: dict[int, asyncio.base_events.Server] = {}
        self.closed = False
        self.loop = asyncio.get_running_loop()
        end.setblocking(False)
        self.loop.add_reader(end.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.end, _MESSAGE.size, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:  # the supervisor is gone: the worker notices on its tick and drains
                self.loop.remove_reader(self.end.fileno())
                return
            verb, slot = _MESSAGE.unpack(data)
            if verb == ADOPT and fds:
                sock = socket.socket(fileno=fds[0])
                if self.closed or slot in self.servers:
                    sock.close()
                else:
                    self.servers[slot] = None  # type: ignore[assignment] - taken while create_server runs
                    self.loop.create_task(self._serve(slot, sock))
            elif verb == RELEASE:
                self._release(slot)

    async def _serve(self, slot: int, sock: socket.socket) -> None:
        try:
            server = await self.loop.create_server(self.protocol_factory, sock=sock, backlog=self.backlog)
        except OSError as exc:
            log.warning("could not adopt slot %d's socket: %s", slot, exc)
            sock.close()
            self.servers.pop(slot, None)
            return
        if self.closed or slot not in self.servers:  # released or stopped meanwhile
            server.close()
            return
        self.servers[slot] = server

    def _release(self, slot: int) -> None:
        server = self.servers.pop(slot, None)
        if server is not None:
            server.close()  # our copy of the socket: the replacement's and the supervisor's stay open

    def close(self) -> None:
        """Stop accepting from every adopted socket (SIGTERM): the drain serves what was accepted."""
        self.closed = True
        for slot in list(self.servers):
            self._release(slot)
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.end.fileno())
        self.end.close()
