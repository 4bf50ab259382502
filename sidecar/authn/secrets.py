"""Connect shared secrets, read from the env var or file each installation names."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from sidecar.decision import Deny, Reason
from sidecar.store.model import Installation

log = logging.getLogger(__name__)

MAX_SECRET_FILE_BYTES = 64 * 1024  # a shared secret is a short string; refuse anything huge


class SecretUnavailable(Exception):
    """A secret could not be read; the message names where it was looked for, never its value."""


def read_secret_file(path: Path) -> bytes:
    """Read one secret file (blocking), strip one trailing newline; refuse empty or huge files."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretUnavailable(f"file {path} cannot be read ({exc.strerror})") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SecretUnavailable(f"file {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise SecretUnavailable(f"file {path} is empty")
    return data


def read_secret_env(name: str, environ: Mapping[str, str]) -> bytes:
    """Read one secret from an environment variable; refuse unset or empty."""
    value = environ.get(name)
    if value is None:
        raise SecretUnavailable(f"environment variable {name} is not set")
    if not value:
        raise SecretUnavailable(f"environment variable {name} is empty")
    return value.encode("utf-8")


def read_installation_secret(
    installation: Installation, environ: Mapping[str, str]
) -> bytes:
    """The installation's secret: its env var when set, else its file (blocking)."""
    env, file = installation.shared_secret_env, installation.shared_secret_file
    if env and (env in environ or not file):
        return read_secret_env(env, environ)
    if file:
        return read_secret_file(Path(file))
    raise SecretUnavailable("names neither shared_secret_env nor shared_secret_file")


@dataclass(frozen=True)
class _Loaded:
    secrets: Mapping[str, bytes]  # client key -> secret
    problems: Mapping[str, str]  # client key -> why its secret is unavailable


class SecretSource:
    """Every installation's shared secret, read at start and on `reload`, never per request.

    `reload` reads files, so it blocks: call it at start-up, or through `reload_async` (which
    runs it in a worker thread) from the event loop. The loaded state is swapped in one
    assignment, so concurrent readers see either the old or the new set, never a mix.
    """

    def __init__(
        self,
        installations: Iterable[Installation] = (),
        *,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._environ = environ
        self._loaded = _Loaded(MappingProxyType({}), MappingProxyType({}))
        self.reload(installations)

    def reload(self, installations: Iterable[Installation]) -> None:
        """Read every installation's secret again (blocking I/O)."""
        secrets: dict[str, bytes] = {}
        problems: dict[str, str] = {}
        for inst in installations:
            try:
                secrets[inst.client_key] = read_installation_secret(inst, self._environ)
            except SecretUnavailable as exc:
                problems[inst.client_key] = str(exc)
                # Re-read every second while secret files are in use: warn once per change.
                if self._loaded.problems.get(inst.client_key) != str(exc):
                    log.warning(
                        "shared secret of Connect installation %s is unavailable: %s",
                        inst.client_key,
                        exc,
                    )
        self._loaded = _Loaded(MappingProxyType(secrets), MappingProxyType(problems))

    async def reload_async(self, installations: Iterable[Installation]) -> None:
        """`reload` in a worker thread, for callers on the event loop."""
        await asyncio.to_thread(self.reload, tuple(installations))

    def secret_for(self, client_key: str) -> bytes:
        """The shared secret of one installation, or Deny(dependency_unavailable)."""
        secret = self._loaded.secrets.get(client_key)
        if secret is None:
            raise Deny(
                Reason.DEPENDENCY_UNAVAILABLE,
                f"shared secret of Connect installation {client_key} is unavailable",
            )
        return secret

    def missing(self) -> list[str]:
        """Client keys whose secret is unavailable, sorted (for /readyz)."""
        return sorted(self._loaded.problems)

    def problems(self) -> Mapping[str, str]:
        """Client key -> where its secret was looked for and why it failed (never the value)."""
        return self._loaded.problems
