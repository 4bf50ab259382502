"""Run a real sidecar (`serve`) on its own event loop in a thread, for tests and the demo."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from sidecar.config import Config
from sidecar.server import Serving, serve


class SidecarThread:
    """`with SidecarThread(config) as s:` serves until the block ends; ports are in `s.serving`."""

    def __init__(self, config: Config, *, poll_seconds: float = 0.2, timeout: float = 20.0):
        self.config = config
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._serving: Serving | None = None
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="sidecar", daemon=True)

    @property
    def serving(self) -> Serving:
        assert self._serving is not None, "sidecar not started"
        return self._serving

    def _on_started(self, serving: Serving) -> None:
        self._serving = serving
        self._started.set()

    def _main(self) -> None:
        async def body() -> int:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            return await serve(
                self.config, stop=self._stop, started=self._on_started,
                poll_seconds=self.poll_seconds,
            )

        try:
            self.exit_code = asyncio.run(body())
        except BaseException as exc:  # reported to the starting thread
            self.error = exc
        finally:
            self._started.set()

    def start(self) -> SidecarThread:
        self._thread.start()
        if not self._started.wait(self.timeout):
            raise TimeoutError("sidecar did not start in time")
        if self._serving is None:
            raise RuntimeError(f"sidecar failed to start: {self.error!r} (exit {self.exit_code})")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self.timeout)

    def __enter__(self) -> SidecarThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
