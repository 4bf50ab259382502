"""Canonicalisation: ambiguous request targets are refused, the rest decoded exactly once."""

from __future__ import annotations

import pytest

from sidecar.decision import Deny, Reason
from sidecar.request import build_request

BASE = "/jsm/assets/workspace/ws-1/v1"


def canon(target: str, method: str = "GET", **headers: str):  # type: ignore[no-untyped-def]
    return build_request(method=method, target=target, headers=headers)


@pytest.mark.parametrize(
    ("target", "segments", "query"),
    [
        (f"{BASE}/object/88", ("jsm", "assets", "workspace", "ws-1", "v1", "object", "88"), ()),
        ("/a%20b/c", ("a b", "c"), ()),
        ("/a/b/", ("a", "b", ""), ()),
        ("/", ("",), ()),
        ("/x?a=1&b=&c", ("x",), (("a", "1"), ("b", ""), ("c", ""))),
        ("/x?q=a+b%2Bc", ("x",), (("q", "a b+c"),)),
        ("/x?u=%E2%82%AC", ("x",), (("u", "€"),)),
        ("/x?semi=a;b", ("x",), (("semi", "a;b"),)),
        ("/x?&&a=1", ("x",), (("a", "1"),)),
        ("/%E2%82%AC", ("€",), ()),
    ],
)
def test_accepted_targets(
    target: str, segments: tuple[str, ...], query: tuple[tuple[str, str], ...]
) -> None:
    req = canon(target)
    assert req.segments == segments
    assert req.query == query
    assert req.raw_path == target.partition("?")[0]


@pytest.mark.parametrize(
    "target",
    [
        f"{BASE}/object/%2F88",  # encoded slash
        f"{BASE}/object/%2f88",
        f"{BASE}/object/%5C88",  # encoded backslash
        f"{BASE}/object\\88",  # backslash
        f"{BASE}/../v1/object/88",  # dot segments
        f"{BASE}/./object/88",
        f"{BASE}/%2E%2E/object/88",  # encoded dot segment
        f"{BASE}/%2e/object/88",
        f"{BASE}//object/88",  # empty segment
        f"{BASE}/object/88;jsessionid=1",  # path parameter
        f"{BASE}/object/88%3Bx",  # encoded ;
        f"{BASE}/object/%00",  # NUL
        f"{BASE}/object/%0A",  # control character, encoded
        f"{BASE}/object/8\x018",  # raw control character
        f"{BASE}/object/8 8",  # raw space
        f"{BASE}/object/%G1",  # invalid escape
        f"{BASE}/object/%4",  # truncated escape
        f"{BASE}/object/%",  # lone percent
        f"{BASE}/object/%C3%28",  # invalid UTF-8
        f"{BASE}/object/88?x=%ZZ",  # invalid escape in the query
        f"{BASE}/object/88?x=%FF",  # invalid UTF-8 in the query
        f"{BASE}/object/88?x=%00",  # NUL in the query
        f"{BASE}/object/88#frag",  # fragment
        "object/88",  # not absolute
        "",
        "*",
        "/caf\u00e9",  # raw non-ASCII
    ],
)
def test_refused_targets(target: str) -> None:
    with pytest.raises(Deny) as exc:
        canon(target)
    assert exc.value.reason is Reason.BAD_REQUEST


def test_method_is_required() -> None:
    with pytest.raises(Deny) as exc:
        build_request(method="", target="/x", headers={})
    assert exc.value.reason is Reason.BAD_REQUEST


def test_headers_lowercased_and_partial_body_flag() -> None:
    req = build_request(
        method="post", target="/x", headers={"X-Envoy-Auth-Partial-Body": "true", "A": "b"},
        body=b"{}",
    )
    assert req.method == "POST"
    assert req.headers["a"] == "b"
    assert req.body_partial is True
