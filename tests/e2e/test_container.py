"""Container (import) tokens through a real Envoy: their own import source and nothing else."""

from __future__ import annotations

import pytest

from ..world import World
from .cases import BASE, BASE2, IMPORTS_INFO, Auth, Case, identity, ids, run_case
from .client import Gateway

SOURCE = f"{BASE}/importsource/is-1"


def container(name: str) -> Auth:
    return lambda w: w.container(name)


def bound(source: str = "is-1", workspace: str = "ws-1") -> dict[str, str]:
    return identity("container-token", "container", workspace=workspace,
                    import_source_id=source)


JSON = [("content-type", "application/json")]
CASES = [
    Case("imports info", "GET", IMPORTS_INFO, container("is-1"), identity=bound()),
    Case("imports info for a source in another workspace", "GET", IMPORTS_INFO,
         container("is-3"), identity=bound("is-3", "ws-2")),
    Case("GET under its own import source", "GET", f"{SOURCE}/mapping", container("is-1"),
         identity=bound()),
    Case("PUT under its own import source", "PUT", f"{SOURCE}/mapping", container("is-1"),
         identity=bound(), body=b'{"mapping":[]}', headers=JSON),
    Case("POST under its own import source", "POST", f"{SOURCE}/executions", container("is-1"),
         identity=bound(), body=b"{}", headers=JSON),
    Case("PATCH deep under its own import source", "PATCH",
         f"{SOURCE}/executions/ex-1/data", container("is-1"), identity=bound(), body=b"[]"),
    Case("DELETE under its own import source", "DELETE", f"{SOURCE}/schedule",
         container("is-1"), identity=bound()),
    Case("the import source itself", "GET", SOURCE, container("is-1"), identity=bound()),
    Case("GET on the token route is a use", "GET", f"{SOURCE}/token", container("is-1"),
         identity=bound()),
    Case("through the gateway base path", "GET",
         "/gateway/api/jsm/assets/workspace/ws-1/v1/importsource/is-1/configstatus",
         container("is-1"), identity=bound()),
    Case("its own source in the other workspace", "GET", f"{BASE2}/importsource/is-3/status",
         container("is-3"), identity=bound("is-3", "ws-2")),
    Case("minting a token", "POST", f"{SOURCE}/token", container("is-1"),
         status=403, reason="token_not_allowed"),
    Case("a foreign import source", "GET", f"{BASE}/importsource/is-2/mapping",
         container("is-1"), status=403, reason="token_not_allowed"),
    Case("its own source under another workspace's path", "GET",
         f"{BASE}/importsource/is-3/status", container("is-3"),
         status=403, reason="token_not_allowed"),
    Case("superseded token", "GET", IMPORTS_INFO, container("is-1:old"),
         status=401, reason="revoked_token"),
    Case("superseded token on its source", "GET", f"{SOURCE}/mapping", container("is-1:old"),
         status=401, reason="revoked_token"),
    Case("unknown opaque token", "GET", IMPORTS_INFO, lambda w: "Bearer not-a-token",
         status=401, reason="unknown_token"),
    Case("an object", "GET", f"{BASE}/object/88", container("is-1"),
         status=403, reason="token_not_allowed"),
    Case("starting an import", "POST", f"{BASE}/import/start/is-1", container("is-1"),
         status=403, reason="token_not_allowed"),
    Case("import progress", "GET", f"{BASE}/progress/category/imports/is-1", container("is-1"),
         status=403, reason="token_not_allowed"),
    Case("an API token on imports info", "GET", IMPORTS_INFO, lambda w: w.basic("acc-admin"),
         status=403, reason="token_not_allowed"),
    Case("an OAuth token on imports info", "GET", IMPORTS_INFO,
         lambda w: w.oauth("acc-admin", "import:import-configuration:cmdb"),
         status=403, reason="token_not_allowed"),
    Case("a Connect token on imports info", "GET", IMPORTS_INFO,
         lambda w: "JWT " + w.connect("GET", IMPORTS_INFO),
         status=403, reason="token_not_allowed"),
    Case("imports info without a credential", "GET", IMPORTS_INFO,
         status=401, reason="missing_credential"),
    Case("a manager uses the import source", "GET", f"{SOURCE}/mapping",
         lambda w: w.basic("acc-ann"),
         identity=identity("api-token", "user", account="acc-ann", role="manager")),
    Case("a manager mints a container token", "POST", f"{SOURCE}/token",
         lambda w: w.basic("acc-ann"),
         identity=identity("api-token", "user", account="acc-ann", role="manager")),
    Case("a developer cannot use the import source", "GET", f"{SOURCE}/mapping",
         lambda w: w.basic("acc-bob"), status=403, reason="role_missing"),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_container_token(case: Case, gateway: Gateway, world: World) -> None:
    run_case(gateway, world, case)
