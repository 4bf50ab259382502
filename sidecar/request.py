"""CheckRequest → our frozen HttpRequest: the only module that reads Envoy request types.

Canonicalisation happens here, once: the raw request target is split at the first `?`, every
ambiguous form is refused (product.md section 9), and the path is decoded exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sidecar.decision import Deny, Reason

_HEX = "0123456789abcdefABCDEF"
_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # raw controls and spaces are never valid in a target


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request as the decision core sees it (decoded once, validated)."""

    method: str
    path: str  # decoded, canonical (one trailing "/" kept when sent)
    segments: tuple[str, ...]  # decoded path segments, no empty ones except a trailing ""
    raw_path: str  # the path as sent (before "?")
    raw_query: str  # the query as sent (after "?"), "" when none
    query: tuple[tuple[str, str], ...]  # decoded pairs, in order ("+" is a space)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes | None = None  # None when Envoy sent no body
    body_partial: bool = False
    request_id: str = ""
    host: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def query_values(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]


def _percent_decode(text: str, *, plus_is_space: bool, what: str) -> str:
    """Decode %XX escapes once; refuse invalid escapes and invalid UTF-8."""
    if "%" not in text and not (plus_is_space and "+" in text):
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            if i + 2 >= n or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                raise Deny(Reason.BAD_REQUEST, f"invalid percent-encoding in {what}")
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        elif ch == "+" and plus_is_space:
            out.append(0x20)
            i += 1
        else:
            out.extend(ch.encode("utf-8"))
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise Deny(Reason.BAD_REQUEST, f"invalid UTF-8 in {what}") from None


def split_target(target: str) -> tuple[str, str]:
    """Split a raw request target into (path, query), refusing fragments and controls."""
    if not target.startswith("/"):
        raise Deny(Reason.BAD_REQUEST, "request target is not an absolute path")
    if "#" in target:
        raise Deny(Reason.BAD_REQUEST, "fragment in request target")
    if _CONTROL.search(target):
        raise Deny(Reason.BAD_REQUEST, "control character or space in request target")
    try:
        target.encode("ascii")
    except UnicodeEncodeError:
        raise Deny(Reason.BAD_REQUEST, "non-ASCII character in request target") from None
    path, sep, query = target.partition("?")
    return path, query if sep else ""


def canonical_segments(raw_path: str) -> tuple[str, ...]:
    """Decode and validate the path; return its segments (a trailing "/" gives a final "")."""
    if ";" in raw_path:
        raise Deny(Reason.BAD_REQUEST, "';' in path")
    if "\\" in raw_path:
        raise Deny(Reason.BAD_REQUEST, "backslash in path")
    if raw_path == "/":
        return ("",)
    parts = raw_path[1:].split("/")
    segments: list[str] = []
    last = len(parts) - 1
    for i, raw in enumerate(parts):
        if raw == "":
            if i == last:
                segments.append("")  # one trailing slash is tolerated (routes never end in "/")
                continue
            raise Deny(Reason.BAD_REQUEST, "empty path segment")
        seg = _percent_decode(raw, plus_is_space=False, what="path")
        if "/" in seg or "\\" in seg:
            raise Deny(Reason.BAD_REQUEST, "encoded slash or backslash in path")
        if ";" in seg:
            raise Deny(Reason.BAD_REQUEST, "';' in path")
        if seg in (".", ".."):
            raise Deny(Reason.BAD_REQUEST, "dot segment in path")
        if _CONTROL.search(seg.replace(" ", "")) or "\x00" in seg:
            raise Deny(Reason.BAD_REQUEST, "control character in path")
        segments.append(seg)
    return tuple(segments)


def parse_query(raw_query: str) -> tuple[tuple[str, str], ...]:
    """Decode `a=b&c` into pairs; "+" is a space; refuse invalid escapes, UTF-8 and NUL."""
    if not raw_query:
        return ()
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if part == "":
            continue
        name, _, value = part.partition("=")
        k = _percent_decode(name, plus_is_space=True, what="query")
        v = _percent_decode(value, plus_is_space=True, what="query")
        if "\x00" in k or "\x00" in v:
            raise Deny(Reason.BAD_REQUEST, "NUL in query")
        pairs.append((k, v))
    return tuple(pairs)


def build_request(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
    request_id: str = "",
    host: str = "",
) -> HttpRequest:
    """Canonicalise one request (pure; raises Deny(bad_request) for ambiguous forms)."""
    if not method or not method.isalpha():
        raise Deny(Reason.BAD_REQUEST, "missing or invalid method")
    raw_path, raw_query = split_target(target)
    segments = canonical_segments(raw_path)
    query = parse_query(raw_query)
    path = "/" + "/".join(segments)
    lowered = MappingProxyType({k.lower(): v for k, v in headers.items()})
    partial = lowered.get("x-envoy-auth-partial-body", "").lower() == "true"
    return HttpRequest(
        method=method.upper(),
        path=path,
        segments=segments,
        raw_path=raw_path,
        raw_query=raw_query,
        query=query,
        headers=lowered,
        body=body,
        body_partial=partial,
        request_id=request_id or lowered.get("x-request-id", ""),
        host=host or lowered.get(":authority", ""),
    )


def headers_of(http: Any) -> dict[str, str]:
    """Header map of an AttributeContext.HttpRequest (`headers`, or `header_map` when raw)."""
    if http.headers:
        return {k.lower(): v for k, v in http.headers.items()}
    merged: dict[str, str] = {}
    for hv in http.header_map.headers:
        key = hv.key.lower()
        value = hv.raw_value.decode("utf-8", "replace") if hv.raw_value else hv.value
        # Repeated headers are joined with "," exactly as Envoy does for `headers`, so a repeated
        # Authorization header is recognised as a duplicate credential either way.
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    return merged


def from_check_request(check: Any) -> HttpRequest:
    """Read an envoy.service.auth.v3.CheckRequest into an HttpRequest (or Deny bad_request)."""
    attrs = check.attributes
    if not attrs.HasField("request") or not attrs.request.HasField("http"):
        # The network (TCP) ext_authz filter sends no HTTP attributes: nothing to authorise.
        raise Deny(Reason.BAD_REQUEST, "CheckRequest carries no HTTP request")
    http = attrs.request.http
    headers = headers_of(http)
    target = http.path or headers.get(":path", "")
    method = http.method or headers.get(":method", "")
    body: bytes | None
    if http.raw_body:
        body = bytes(http.raw_body)
    elif http.body:
        body = http.body.encode("utf-8")
    else:
        body = b"" if "x-envoy-auth-partial-body" in headers else None
    return build_request(
        method=method,
        target=target,
        headers=headers,
        body=body,
        request_id=headers.get("x-request-id", ""),
        host=http.host,
    )
