"""`assets-authz connect-jwt`: sign a Connect JWT (HS256 + qsh) for one request, for testing."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from sidecar.authn.qsh import canonical_request, query_string_hash
from sidecar.authn.secrets import SecretUnavailable, read_secret_env, read_secret_file


def _split_url(url: str) -> tuple[str, str]:
    """(path, query) of a path with query, or of an absolute URL; the fragment is dropped."""
    if url.startswith("/"):
        path, _, query = url.partition("#")[0].partition("?")
        return path, query
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError("url must be a path starting with '/' or an absolute URL")
    return parts.path, parts.query


def sign_connect_jwt(
    *,
    issuer: str,
    secret: bytes,
    method: str,
    url: str,
    now: float,
    lifetime: float = 180,
    sub: str | None = None,
    strip_prefixes: Sequence[str] = (),
) -> str:
    """An HS256 Connect JWT bound by `qsh` to `method` and `url` (decoded-path form)."""
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    if not secret:
        raise ValueError("the shared secret is empty")
    path, query = _split_url(url)
    canonical = canonical_request(method, path, query, strip_prefixes=strip_prefixes)
    claims: dict[str, Any] = {
        "iss": issuer,
        "iat": int(now),
        "exp": int(now + lifetime),
        "qsh": query_string_hash(canonical),
    }
    if sub is not None:
        claims["sub"] = sub
    with warnings.catch_warnings():
        # Connect shared secrets are whatever the installation handed out; a short one is the
        # installation's business, not a reason to clutter this tool's output.
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS256")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `connect-jwt` (shared by this module's main and the assets-authz CLI)."""
    parser.add_argument("--iss", required=True, help="client key (or app key) of the installation")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--secret-env", metavar="NAME", help="env var holding the shared secret")
    source.add_argument("--secret-file", metavar="PATH", help="file holding the shared secret")
    parser.add_argument("--method", default="GET", help="HTTP method (default GET)")
    parser.add_argument("--url", required=True, help="path with query, or an absolute URL")
    parser.add_argument("--sub", help="account id to act as (needs ACT_AS_USER)")
    parser.add_argument(
        "--lifetime", type=float, default=180.0, help="seconds until exp (default 180)"
    )
    parser.add_argument(
        "--strip-prefix", action="append", default=[], metavar="PREFIX",
        help="path prefix left out of the qsh (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the token alone on standard output; problems go to standard error (exit 1)."""
    try:
        if args.secret_env:
            secret = read_secret_env(args.secret_env, os.environ)
        else:
            secret = read_secret_file(Path(args.secret_file))
        token = sign_connect_jwt(
            issuer=args.iss,
            secret=secret,
            method=args.method,
            url=args.url,
            now=time.time(),
            lifetime=args.lifetime,
            sub=args.sub,
            strip_prefixes=tuple(args.strip_prefix),
        )
    except (SecretUnavailable, ValueError, jwt.PyJWTError) as exc:
        print(f"connect-jwt: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assets-authz connect-jwt", description=__doc__)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
