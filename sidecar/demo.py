"""`make run` / `make demo`: seed a demo store, mint demo credentials, print what to try, serve.

The demo is the real product on deploy/examples: the same `serve`, plus a local OAuth issuer
(JWKS on 127.0.0.1:9193) and, with `--with-envoy`, a real Envoy in front of an echo upstream.
Demo secrets are for this machine only; they are printed on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecar.config import Config, ConfigError, load_config
from sidecar.logs import setup_logging
from sidecar.server import serve
from sidecar.store.policy import PolicyError, load_policy
from sidecar.store.sqlite import SqliteStore
from sidecar.testing.echo import start_echo, stop_echo
from sidecar.testing.envoy import EnvoyProcess, render_demo_config
from sidecar.testing.jwks_server import JwksServer
from sidecar.testing.keys import jwks, mint_oauth_token, public_jwk
from sidecar.tools.connect_jwt import sign_connect_jwt

log = logging.getLogger(__name__)

DEMO_LABEL = "make-run demo"
DEMO_CONNECT_SECRET = "demo-reporting-shared-secret-not-for-production"
ENVOY_PORT, ENVOY_ADMIN_PORT, UPSTREAM_PORT = 9000, 9901, 9180
KID = "demo-1"


def _demo_key(folder: Path) -> rsa.RSAPrivateKey:
    """The demo issuer's signing key, kept beside the demo store so tokens survive restarts."""
    path = folder / "oauth-demo-key.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


def _seed(config: Config) -> tuple[SqliteStore, dict[str, str]]:
    """Apply the demo policy and mint fresh demo tokens (older demo tokens are revoked)."""
    assert config.store_path is not None
    config.store_path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(config.store_path)
    if config.policy_file is not None:
        store.apply(load_policy(config.policy_file), dry_run=False)
    for record in store.list_tokens():
        if record.label == DEMO_LABEL and not record.revoked:
            store.revoke(record.id)
    now = time.time()
    tokens = {
        "ann": store.mint_api("acc-ann", None, 7, DEMO_LABEL, now)[1],
        "dan": store.mint_api("acc-dan", None, 7, DEMO_LABEL, now)[1],
        "eve-read": store.mint_api("acc-eve", ["read:cmdb-object:jira"], 7, DEMO_LABEL, now)[1],
    }
    snapshot = store.load_snapshot()
    sources = sorted(snapshot.import_sources)
    if sources:
        tokens["container"] = store.mint_container(sources[0], 7, DEMO_LABEL, now)[1]
        tokens["container-source"] = sources[0]
    return store, tokens


def _basic(email: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()


def _print_guide(config: Config, tokens: dict[str, str], oauth: str, connect: str,
                 base_url: str | None) -> None:
    ws = "/jsm/assets/workspace/ws-1/v1"
    cfg = shlex.quote(str(config.path))

    def p(text: str = "") -> None:
        print(text)

    p("=" * 78)
    p("assets-authz demo")
    p(f"  gRPC Check + health : {config.listen.grpc}")
    p(f"  metrics / health    : http://{config.listen.http}/metrics  /healthz  /readyz")
    p(f"  OAuth issuer (JWKS) : {config.oauth.issuers[0].jwks_uri if config.oauth.issuers else '-'}")
    if base_url:
        p(f"  Envoy (curl here)   : {base_url}   (admin http://127.0.0.1:{ENVOY_ADMIN_PORT})")
    p("")
    p("Demo credentials (valid 7 days; minted for this run); paste into another shell:")
    p(f"  export REPORTING_SHARED_SECRET='{DEMO_CONNECT_SECRET}'")
    p(f"  export ANN='{_basic('ann@example.test', tokens['ann'])}'   # ITSM manager")
    p(f"  export DAN='{_basic('dan@example.test', tokens['dan'])}'   # developer, but only user on Laptops")
    p(f"  export EVE='{_basic('eve@example.test', tokens['eve-read'])}'   # scoped: read objects only")
    p(f"  export OAUTH='Bearer {oauth}'   # acc-ann via an OAuth client, read scopes")
    if "container" in tokens:
        p(f"  export CTR='Bearer {tokens['container']}'   # import source {tokens['container-source']}")
    p(f"  export CONNECT='JWT {connect}'   # Connect app com.example.reporting, GET {ws}/object/88")
    p("")
    if base_url:
        p("Try it through Envoy:")
        p(f'  curl -i {base_url}{ws}/object/88 -H "Authorization: $ANN"          # 200, role manager')
        p(f'  curl -i -X PUT {base_url}{ws}/object/88 -H "Authorization: $DAN"   # 403 role_missing')
        p(f'  curl -i -X PUT {base_url}{ws}/object/89 -H "Authorization: $DAN"   # 200 (Server type)')
        p(f'  curl -i -X DELETE {base_url}{ws}/object/88 -H "Authorization: $EVE" # 403 insufficient_scope')
        p(f'  curl -i {base_url}{ws}/object/88 -H "Authorization: $OAUTH"')
        p(f'  curl -i {base_url}{ws}/object/88 -H "Authorization: $CONNECT"')
        if "container" in tokens:
            p(f'  curl -i {base_url}/jsm/assets/v1/imports/info -H "Authorization: $CTR"')
        p(f"  curl -i {base_url}{ws}/object/88                                  # 401 missing_credential")
        p(f"  curl -i --path-as-is '{base_url}{ws}/object/../objectschema/1'   # 400 bad_request")
    else:
        p("Try it (no Envoy needed; `make demo` adds a real Envoy for curl):")
        p(f'  .venv/bin/assets-authz explain --config {cfg} --method GET --path {ws}/object/88 -H "Authorization: $ANN"')
        p(f'  .venv/bin/assets-authz explain --config {cfg} --method PUT --path {ws}/object/88 -H "Authorization: $DAN"')
        p(f'  .venv/bin/assets-authz explain --config {cfg} --method GET --path {ws}/object/88 -H "Authorization: $OAUTH"')
        p(f'  .venv/bin/assets-authz explain --config {cfg} --method GET --path {ws}/object/88 -H "Authorization: $CONNECT"')
        p(f"  curl -s http://{config.listen.http}/readyz")
        p("  (explain decides offline: its decisions are not counted in /metrics; `make demo` sends")
        p("   real traffic through Envoy, which is.)")
    p("")
    p("More:")
    p(f"  .venv/bin/assets-authz token create api --config {cfg} --account-id acc-bob --scope read:cmdb-object:jira")
    p(f"  .venv/bin/assets-authz token list --config {cfg}")
    p("  .venv/bin/assets-authz connect-jwt \\")
    p(f"      --iss jira:abc-123 --secret-env REPORTING_SHARED_SECRET --method GET --url '{ws}/objectschema/list'")
    p("Stop with Ctrl-C.")
    p("=" * 78)
    sys.stdout.flush()


def run(config_path: str, with_envoy: bool) -> int:
    setup_logging()
    os.environ.setdefault("REPORTING_SHARED_SECRET", DEMO_CONNECT_SECRET)
    try:
        config = load_config(config_path)
        store, tokens = _seed(config)
    except (ConfigError, PolicyError) as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 1
    assert config.store_path is not None
    key = _demo_key(config.store_path.parent)
    issuer = config.oauth.issuers[0] if config.oauth.issuers else None
    jwks_server = None
    oauth = ""
    if issuer is not None:
        port = urlsplit(issuer.jwks_uri).port or 80
        jwks_server = JwksServer(jwks(public_jwk(key, KID, "RS256")), port=port, issuer=issuer.issuer)
        now = int(time.time())
        oauth = mint_oauth_token(key, KID, "RS256", {
            "iss": issuer.issuer, "sub": "acc-ann", "client_id": "demo-cli",
            "aud": issuer.audiences[0] if issuer.audiences else "assets",
            "iat": now, "exp": now + 7 * 86400,
            "scope": "read:cmdb-object:jira read:cmdb-schema:jira read:cmdb-type:jira",
        })
    connect = sign_connect_jwt(
        issuer="jira:abc-123", secret=os.environ["REPORTING_SHARED_SECRET"].encode(),
        method="GET", url="/jsm/assets/workspace/ws-1/v1/object/88", now=time.time(),
        lifetime=3600,
    )
    envoy = echo = None
    base_url = None
    try:
        if with_envoy:
            echo, upstream_port = start_echo(UPSTREAM_PORT)
            authz_port = int(config.listen.grpc.rpartition(":")[2])
            envoy = EnvoyProcess(render_demo_config(ENVOY_PORT, ENVOY_ADMIN_PORT, authz_port,
                                                    upstream_port))
            base_url = f"http://127.0.0.1:{ENVOY_PORT}"
        _print_guide(config, tokens, oauth, connect, base_url)
        del store
        return asyncio.run(serve(config))
    finally:
        if envoy is not None:
            envoy.stop()
        if echo is not None:
            stop_echo(echo)
        if jwks_server is not None:
            jwks_server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecar.demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="seed the demo store, print what to try, serve")
    r.add_argument("--config", default="deploy/examples/config.yaml")
    r.add_argument("--with-envoy", action="store_true", help="also start Envoy + echo upstream")
    args = parser.parse_args(argv)
    return run(args.config, args.with_envoy)


if __name__ == "__main__":
    raise SystemExit(main())
