"""A raw HTTP/1.1 client for the end-to-end tests, and the checks every allow and deny must pass.

`http.client` is driven by hand (`putrequest`/`putheader`) so the request target goes out exactly
as written (no dot-segment or slash clean-up) and a header may be sent more than once.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PREFIX = "x-assets-"
DECISION_ID = re.compile(r"^[0-9a-f]{32}$")
HeaderList = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Upstream:
    """What the echo upstream saw: method, raw path with query, and the header lines."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def identity(self) -> dict[str, str]:
        """Every `x-assets-*` header the upstream got (one value each, or the test fails)."""
        found: dict[str, str] = {}
        for name, value in self.headers:
            if name.startswith(PREFIX):
                assert name not in found, f"{name} reached the upstream twice"
                found[name[len(PREFIX):]] = value
        return found


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]  # lower-case names, in order, repeats kept
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.values(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def json(self) -> Any:
        return json.loads(self.body)

    def upstream(self) -> Upstream:
        data = self.json()
        assert set(data) == {"method", "path", "headers"}, f"not the echo upstream: {data}"
        return Upstream(
            data["method"], data["path"], tuple((k.lower(), v) for k, v in data["headers"])
        )

    def __str__(self) -> str:
        return f"{self.status} {dict(self.headers)} {self.body[:300]!r}"


class Gateway:
    """Envoy's listener, with the sidecar behind it and the echo upstream behind that."""

    def __init__(self, port: int) -> None:
        self.port = port

    def send(
        self,
        method: str,
        target: str,
        *,
        auth: str | None = None,
        headers: HeaderList | Mapping[str, str] = (),
        body: bytes | None = None,
        chunks: Sequence[bytes] | None = None,
    ) -> Reply:
        """One request on a fresh connection; `target` is sent byte for byte.

        `body` goes with a Content-Length; `chunks` instead with Transfer-Encoding: chunked.
        """
        lines = list(headers.items() if isinstance(headers, Mapping) else headers)
        if auth is not None:
            lines.append(("Authorization", auth))
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in lines:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            if chunks is not None:
                conn.putheader("Transfer-Encoding", "chunked")
                body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
            conn.endheaders(body)
            response = conn.getresponse()
            return Reply(
                response.status,
                tuple((k.lower(), v) for k, v in response.getheaders()),
                response.read(),
            )
        finally:
            conn.close()


def assert_denied(reply: Reply, status: int, reason: str) -> None:
    """A deny from the sidecar: status, reason, decision id, Jira JSON body; upstream untouched."""
    assert (reply.status, reply.header(PREFIX + "authz-reason")) == (status, reason), str(reply)
    assert DECISION_ID.match(reply.header(PREFIX + "decision-id") or ""), str(reply)
    assert reply.header("content-type") == "application/json", str(reply)
    body = reply.json()
    assert set(body) == {"errorMessages", "errors"}, body
    assert body["errors"] == {}
    messages = body["errorMessages"]
    assert isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], str)
    assert messages[0], "the error message is empty"


def assert_allowed(reply: Reply, identity: Mapping[str, str]) -> Upstream:
    """An allow: the upstream got exactly `identity` (plus a decision id) and no credential."""
    assert reply.status == 200, str(reply)
    assert reply.header(PREFIX + "authz-reason") is None
    seen = reply.upstream()
    got = seen.identity()
    assert DECISION_ID.match(got.pop("decision-id", "")), seen.headers
    assert got == dict(identity)
    assert seen.values("authorization") == [], "the credential reached the upstream"
    return seen


def challenges(reply: Reply) -> list[str]:
    return reply.values("www-authenticate")


# The challenges of a 401 with the test world's configuration (OAuth issuer, container, API
# and Connect all enabled); a presented bearer token adds error="invalid_token".
CHALLENGES = ['Bearer realm="assets"', 'Basic realm="assets"', 'JWT realm="assets"']
BEARER_CHALLENGES = [
    'Bearer realm="assets", error="invalid_token"', 'Basic realm="assets"', 'JWT realm="assets"',
]
