"""The Connect query string hash: canonical request and `qsh` (assets-model.md section 4)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from urllib.parse import quote, unquote_to_bytes

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _decode(text: str, *, plus_is_space: bool) -> str:
    """Percent-decode once, strictly: an invalid escape or invalid UTF-8 is a ValueError."""
    if plus_is_space:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        raise ValueError("invalid percent-encoding")
    return unquote_to_bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError


def _encode(text: str) -> str:
    """RFC 3986: only A-Z a-z 0-9 - . _ ~ stay literal; UTF-8 bytes as upper-case %XX."""
    return quote(text, safe="")


def _strip_prefix(path: str, prefixes: Sequence[str]) -> str:
    """Remove the longest prefix that is followed by "/" or ends the path (whole segments)."""
    best = ""
    for prefix in prefixes:
        prefix = prefix.rstrip("/")
        if len(prefix) > len(best) and (path == prefix or path.startswith(prefix + "/")):
            best = prefix
    return path[len(best) :]


def canonical_uri(raw_path: str, strip_prefixes: Sequence[str] = (), *, decode: bool = True) -> str:
    """The URI part: decoded path, prefix removed, one trailing "/" removed, "&" as "%26"."""
    path = _decode(raw_path, plus_is_space=False) if decode else raw_path
    path = _strip_prefix(path, strip_prefixes) or "/"
    if path != "/" and path.endswith("/"):
        path = path[:-1]
    return path.replace("&", "%26")


def canonical_query(raw_query: str) -> str:
    """The QUERY part: decoded, `jwt` dropped, values sorted and joined, pairs sorted by name."""
    values: dict[str, list[str]] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition("=")
        name = _decode(raw_name, plus_is_space=True)
        if name == "jwt":
            continue
        values.setdefault(name, []).append(_decode(raw_value, plus_is_space=True))
    # Decoded strings are sorted by code point and only then encoded (Atlassian's vectors).
    return "&".join(
        f"{_encode(name)}={','.join(_encode(v) for v in sorted(values[name]))}"
        for name in sorted(values)
    )


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    *,
    strip_prefixes: Sequence[str] = (),
    decode_path: bool = True,
) -> str:
    """`METHOD&URI&QUERY` for one request; raises ValueError for invalid percent-encoding."""
    uri = canonical_uri(raw_path, strip_prefixes, decode=decode_path)
    return f"{method.upper()}&{uri}&{canonical_query(raw_query)}"


def query_string_hash(canonical: str) -> str:
    """Lower-case hex SHA-256 of the UTF-8 canonical request."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def candidate_hashes(
    method: str, raw_path: str, raw_query: str, strip_prefixes: Sequence[str] = ()
) -> tuple[str, ...]:
    """Every `qsh` this request accepts: the decoded-path hash, and the as-sent-path hash.

    The second exists only when the path carries percent-escapes: Atlassian's Java stack
    hashes the decoded path, its JavaScript and Python libraries the path as sent. Both forms
    are bound to this very request, so accepting either loosens nothing.
    """
    method = method.upper()
    query = canonical_query(raw_query)
    decoded = f"{method}&{canonical_uri(raw_path, strip_prefixes)}&{query}"
    hashes = [query_string_hash(decoded)]
    if "%" in raw_path:
        as_sent = f"{method}&{canonical_uri(raw_path, strip_prefixes, decode=False)}&{query}"
        if as_sent != decoded:
            hashes.append(query_string_hash(as_sent))
    return tuple(hashes)
