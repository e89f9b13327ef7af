"""A real HTTP receiver on 127.0.0.1 for delivery tests: records requests, answers on cue.

``fail_first[path] = n`` answers 500 to the first n requests on that path, then 200;
``slow[path] = s`` waits s seconds (at most 10) before answering. The
server runs in a daemon thread and is shut down when the context ends (bounded by the test).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering (< 10)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; received {[(r.path, r.answered) for r in self.requests]}"
        )


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec = state["r"]
            time.sleep(min(rec.slow.get(self.path, 0.0), 10.0))
            with rec.lock:
                seen = sum(1 for r in rec.requests if r.path == self.path)
                code = 500 if seen < rec.fail_first.get(self.path, 0) else 200
                rec.requests.append(Received(self.path, dict(self.headers), body, time.time(), code))
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield state["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
