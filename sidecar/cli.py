"""The `assets-authz` command line: serve, check-config, apply, token, explain, connect-jwt."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from sidecar import __version__
from sidecar.authn.secrets import SecretUnavailable, read_installation_secret
from sidecar.config import Config, ConfigError, config_warnings, load_config
from sidecar.store.model import Installation, TokenRecord
from sidecar.store.policy import Policy, PolicyError, load_policy
from sidecar.store.sqlite import SqliteStore, StoreError, TokenError, preview_apply
from sidecar.store.tokens import parse_token

OK, FAILED, USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _positive_days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError("must be a number of days above 0 and below 1000000")
    return value


def _config(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            _err(f"{exc.source}: {problem}")
        return None


def _policy(path: str) -> Policy | None:
    try:
        return load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            _err(f"{exc.source}: {problem}")
        return None


def _store(config: Config) -> SqliteStore | None:
    if config.store_path is None:
        _err(f"{config.path}: store: only sqlite stores are supported by this command")
        return None
    try:
        return SqliteStore(config.store_path)
    except StoreError as exc:
        _err(f"error: {exc}")
        return None


def _check_config(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if config is None:
        return FAILED
    print(f"{config.path}: ok")
    for warning in config_warnings(config):
        _err(f"warning: {warning}")
    if config.policy_file is not None:
        policy = _policy(str(config.policy_file))
        if policy is None:
            return FAILED
        print(f"{config.policy_file}: ok")
        _warn_about_secrets(policy)
    return OK


MIN_SECRET_BYTES = 32  # an HS256 key shorter than its hash can be brute-forced from one token


def _warn_about_secrets(policy: Policy) -> None:
    """Warn about Connect secrets this environment cannot read, or that are short.

    `serve` reads them from its own environment, so these are warnings, not failures.
    """
    for spec in policy.installations:
        installation = Installation(
            client_key=spec.client_key, app_key=spec.app_key, scopes=spec.scopes,
            account_id=spec.account_id, shared_secret_env=spec.shared_secret_env,
            shared_secret_file=spec.shared_secret_file,
        )
        try:
            secret = read_installation_secret(installation, os.environ)
        except SecretUnavailable as exc:
            _err(f"warning: connect installation {spec.client_key}: {exc} "
                 "(serve will report not ready and deny its tokens until it can read it)")
            continue
        if len(secret) < MIN_SECRET_BYTES:
            _err(f"warning: connect installation {spec.client_key}: its shared secret is "
                 f"shorter than {MIN_SECRET_BYTES} bytes")


def _apply(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if config is None:
        return FAILED
    policy = _policy(args.file)
    if policy is None:
        return FAILED
    if args.dry_run and config.store_path is not None and not config.store_path.exists():
        changes = preview_apply(policy)  # writes nothing, not even an empty store
    else:
        store = _store(config)
        if store is None:
            return FAILED
        try:
            changes = store.apply(policy, dry_run=args.dry_run)
        except StoreError as exc:
            _err(f"error: {exc}")
            return FAILED
    for line in changes:
        print(line)
    if not changes:
        print("no changes")
    if args.dry_run:
        _err("dry run: nothing was written")
    elif changes:
        _err(f"applied {len(changes)} change(s) to {config.store_path}")
    return OK


def _print_minted(args: argparse.Namespace, record: TokenRecord, token: str, note: str) -> None:
    if args.json:
        print(json.dumps({"id": record.id, "token": token, "expires_at": _iso(record.expires_at)}))
    else:
        print(token)
    expires = _iso(record.expires_at) or "never"
    _err(f"{note}; expires: {expires}. Copy the token now: it is not shown again.")


def _token_create_api(args: argparse.Namespace) -> int:
    config = _config(args.config)
    store = _store(config) if config is not None else None
    if store is None:
        return FAILED
    try:
        record, token = store.mint_api(
            args.account_id, args.scopes, args.expires_days, args.label, time.time()
        )
    except (TokenError, StoreError) as exc:
        _err(f"error: {exc}")
        return FAILED
    if config is not None and not config.api_tokens_enabled:
        _err("note: api_tokens.enabled is false: the sidecar refuses this token until enabled")
    scopes = " ".join(sorted(record.scopes)) if record.scopes is not None else "unscoped"
    _print_minted(
        args, record, token, f"created API token {record.id} for {args.account_id} ({scopes})"
    )
    return OK


def _token_create_container(args: argparse.Namespace) -> int:
    config = _config(args.config)
    store = _store(config) if config is not None else None
    if store is None:
        return FAILED
    try:
        record, token = store.mint_container(
            args.import_source, args.expires_days, args.label, time.time()
        )
    except (TokenError, StoreError) as exc:
        _err(f"error: {exc}")
        return FAILED
    if config is not None and not config.container_tokens_enabled:
        _err("note: container_tokens.enabled is false: the sidecar refuses this token until "
             "enabled")
    _print_minted(
        args, record, token,
        f"created container token {record.id} for import source {args.import_source}; "
        "its earlier tokens no longer work",
    )
    return OK


def _token_json(record: TokenRecord, now: float) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind,
        "account_id": record.account_id,
        "import_source": record.import_source,
        "label": record.label,
        "scopes": sorted(record.scopes) if record.scopes is not None else None,
        "created_at": _iso(record.created_at),
        "expires_at": _iso(record.expires_at),
        "revoked": record.revoked or record.superseded,
        "superseded": record.superseded,
        "expired": record.expires_at is not None and now >= record.expires_at,
    }


def _status(record: TokenRecord, now: float) -> str:
    if record.revoked:
        return "revoked"
    if record.superseded:
        return "superseded"
    if record.expires_at is not None and now >= record.expires_at:
        return "expired"
    return "active"


def _write_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
              file=out)


def _token_list(args: argparse.Namespace) -> int:
    config = _config(args.config)
    store = _store(config) if config is not None else None
    if store is None:
        return FAILED
    try:
        records = store.list_tokens()
    except StoreError as exc:
        _err(f"error: {exc}")
        return FAILED
    now = time.time()
    if args.json:
        print(json.dumps([_token_json(r, now) for r in records], indent=2))
        return OK
    if not records:
        print("no tokens")
        return OK
    rows = [["ID", "KIND", "FOR", "LABEL", "SCOPES", "CREATED", "EXPIRES", "STATUS"]]
    for r in records:
        rows.append([
            r.id,
            r.kind,
            (r.account_id if r.kind == "api" else r.import_source) or "",
            r.label,
            ",".join(sorted(r.scopes)) if r.scopes is not None else "-",
            _iso(r.created_at) or "",
            _iso(r.expires_at) or "never",
            _status(r, now),
        ])
    _write_table(rows, sys.stdout)
    return OK


def _token_revoke(args: argparse.Namespace) -> int:
    config = _config(args.config)
    store = _store(config) if config is not None else None
    if store is None:
        return FAILED
    parsed = parse_token(args.id)  # a leaked token may be pasted whole
    token_id = parsed.id if parsed is not None else args.id
    try:
        found = store.revoke(token_id)
    except StoreError as exc:
        _err(f"error: {exc}")
        return FAILED
    if not found:
        _err(f"error: no token with id {token_id!r}")
        return FAILED
    print(f"revoked token {token_id}")
    return OK


def _serve(args: argparse.Namespace) -> int:
    from sidecar.server import run

    return run(args.config)


def _explain(args: argparse.Namespace) -> int:
    from sidecar.explain import run_cli

    return run_cli(args.config, args.method, args.path, args.headers, args.body_file)


def _connect_jwt(argv: list[str]) -> int:
    from sidecar.tools.connect_jwt import main as connect_jwt_main

    return connect_jwt_main(argv)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="configuration file")


def _token_parsers(sub: Any) -> None:
    token = sub.add_parser("token", help="mint, list and revoke API and container tokens")
    tsub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="mint a token (printed once)")
    csub = create.add_subparsers(dest="kind", required=True, metavar="KIND")

    api = csub.add_parser("api", help="a user API token (Basic email:token)")
    _add_config(api)
    api.add_argument("--account-id", required=True, metavar="ID")
    api.add_argument(
        "--scope", dest="scopes", action="extend", nargs="+", metavar="S",
        help="limit the token to these granular scopes (default: unscoped)",
    )
    container = csub.add_parser("container", help="a container token for one import source")
    _add_config(container)
    container.add_argument("--import-source", required=True, metavar="ID")
    for p, handler in ((api, _token_create_api), (container, _token_create_container)):
        p.add_argument("--expires-days", type=_positive_days, metavar="N")
        p.add_argument("--label", default="", metavar="L")
        p.add_argument("--json", action="store_true", help="print {id, token, expires_at}")
        p.set_defaults(handler=handler)

    listing = tsub.add_parser("list", help="list tokens (never their secrets)")
    _add_config(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_token_list)

    revoke = tsub.add_parser("revoke", help="revoke one token by id")
    _add_config(revoke)
    revoke.add_argument("id", metavar="ID")
    revoke.set_defaults(handler=_token_revoke)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assets-authz",
        description="Envoy ext_authz sidecar enforcing the Assets three-layer security model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the Check service and the ops endpoint")
    _add_config(serve)
    serve.set_defaults(handler=_serve)

    check = sub.add_parser("check-config", help="validate the config (and its policy_file)")
    _add_config(check)
    check.set_defaults(handler=_check_config)

    apply = sub.add_parser("apply", help="make the store match a policy file, atomically")
    _add_config(apply)
    apply.add_argument("-f", "--file", required=True, metavar="POLICY", help="policy YAML")
    apply.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    apply.set_defaults(handler=_apply)

    _token_parsers(sub)

    explain = sub.add_parser("explain", help="decide one request offline and show the trace")
    _add_config(explain)
    explain.add_argument("--method", required=True, metavar="M")
    explain.add_argument("--path", required=True, metavar="P", help="request target with query")
    explain.add_argument(
        "-H", "--header", dest="headers", action="append", default=[], metavar="'NAME: VALUE'"
    )
    explain.add_argument("--body-file", metavar="F")
    explain.set_defaults(handler=_explain)

    # Listed for --help; main() hands everything after it to the tool untouched.
    sub.add_parser("connect-jwt", help="sign a Connect JWT for a request (testing aid)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 fixable failure, 2 usage error)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["connect-jwt"]:
        return _connect_jwt(arguments[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (OK if exc.code is None else USAGE)
    handler: Handler = args.handler
    return handler(args)
