"""A TCP proxy on loopback that drops, delays and resets connections, at random but reproducibly.

It sits between the device and the real server. Besides refusing and resetting connections, it
can cut the connection *after the server answered* — the server has committed, the device never
hears it — which is the case that makes naive sync protocols store a note twice.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    reset_before: float = 0.0  # reset the connection before forwarding the request
    drop_answer: float = 0.0  # forward the request, then reset instead of relaying the answer
    delay: float = 0.0  # chance of a random delay (up to max_delay) before relaying a chunk
    max_delay: float = 0.3
    seed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"reset_before": 0, "drop_answer": 0, "delayed": 0})


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close sends RST, like a connection that died on a weak mobile network.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class FaultProxy:
    def __init__(self, upstream_port: int, faults: Faults) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        self.thread.join(timeout=5)

    def _chance(self, p: float, name: str) -> bool:
        with self.lock:
            hit = self.rng.random() < p
            if hit:
                self.faults.counts[name] += 1
            return hit

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        answered_since_request = True
        try:
            while not self.stopping.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        if answered_since_request and self._chance(self.faults.reset_before, "reset_before"):
                            return
                        answered_since_request = False
                        self._maybe_delay()
                        upstream.sendall(data)
                    else:
                        if not answered_since_request and self._chance(self.faults.drop_answer, "drop_answer"):
                            return  # the server has answered (and committed); the device never hears it
                        answered_since_request = True
                        self._maybe_delay()
                        client.sendall(data)
        except OSError:
            return
        finally:
            _reset(client)
            with contextlib.suppress(OSError):
                upstream.close()

    def _maybe_delay(self) -> None:
        if self.faults.delay and self._chance(self.faults.delay, "delayed"):
            with self.lock:
                wait = self.rng.uniform(0, self.faults.max_delay)
            self.stopping.wait(wait)
