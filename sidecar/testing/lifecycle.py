"""`with thing:` for helpers that start on construction and end with `stop()`."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StopOnExit:
    """Mixin: entering returns the object, leaving the block calls `stop()`."""

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
