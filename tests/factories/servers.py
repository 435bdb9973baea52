"""Fixture factories that run real servers on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI


class _ThreadedUvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningApi:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread


@contextlib.contextmanager
def run_api(app: FastAPI, port: int) -> Iterator[RunningApi]:
    """Serve ``app`` with uvicorn on 127.0.0.1:``port`` in a thread, stop it afterwards."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    server = _ThreadedUvicorn(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("API server did not start")
        time.sleep(0.02)
    try:
        yield RunningApi(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
