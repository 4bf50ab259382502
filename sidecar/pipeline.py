"""The one async function that runs the three layers, in the order of product.md section 6."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sidecar.authn.base import Authenticator
from sidecar.authn.credentials import (
    Credential,
    CredentialKind,
    extract_credential,
    without_jwt_parameter,
)
from sidecar.authn.principal import Principal, PrincipalKind
from sidecar.config import Config
from sidecar.decision import Decision, Deny, Layer, Reason, TraceStep
from sidecar.metrics import Metrics
from sidecar.operations.router import ImportsInfo, Managed, Route, Router, Unmanaged
from sidecar.operations.table import OperationMatch
from sidecar.permissions import check_api_permission
from sidecar.request import HttpRequest
from sidecar.resolver import TargetResolver
from sidecar.roles.check import RoleGrant, authorize
from sidecar.roles.targets import Target, UnknownTarget, resolve_target
from sidecar.store.model import Snapshot

log = logging.getLogger(__name__)

_MAX_RESOLVER_HOPS = 3  # object -> type -> schema at most
MAX_DETAIL_CHARS = 256


def new_decision_id() -> str:
    return uuid.uuid4().hex


@dataclass
class _Progress:
    """What the pipeline learnt so far; turned into the Decision at the end."""

    trace: list[TraceStep] = field(default_factory=list)
    credential: Credential | None = None
    principal: Principal | None = None
    operation: str | None = None
    workspace_id: str | None = None
    layer: Layer = Layer.REQUEST

    def passed(self, layer: Layer, detail: str = "") -> None:
        self.trace.append(TraceStep(layer, "pass", detail))


@dataclass
class Engine:
    """Everything one decision needs, compiled once per configuration generation."""

    config: Config
    authenticators: Mapping[CredentialKind, Authenticator]
    snapshots: Callable[[], Snapshot]  # raises Deny(dependency_unavailable) when too stale
    router: Router | None = None
    resolver: TargetResolver | None = None
    metrics: Metrics | None = None
    clock: Callable[[], float] = time.time
    new_id: Callable[[], str] = new_decision_id

    def __post_init__(self) -> None:
        if self.router is None:
            self.router = Router(self.config.api)

    async def decide(self, request: HttpRequest, decision_id: str | None = None) -> Decision:
        """Decide one canonical request; never raises."""
        did = decision_id or self.new_id()
        progress = _Progress()
        try:
            return await self._decide(request, did, progress)
        except Deny as deny:
            return self.deny(did, deny, progress)
        except Exception:
            log.exception("internal error while deciding", extra={"fields": {"decision_id": did}})
            progress.layer = Layer.INTERNAL
            return self.deny(did, Deny(Reason.INTERNAL_ERROR, "unexpected exception"), progress)

    def deny(self, did: str, deny: Deny, progress: _Progress | None = None) -> Decision:
        """Turn a Deny into a Decision with trace, challenges and bookkeeping."""
        progress = progress or _Progress()
        layer = progress.layer
        detail = _clip(deny.detail)
        trace = (*progress.trace, TraceStep(layer, "deny", f"{deny.reason.value}: {detail}"))
        principal = progress.principal
        return Decision(
            allowed=False,
            decision_id=did,
            reason=deny.reason,
            layer=layer,
            detail=detail,
            challenges=self._challenges(deny, progress.credential),
            auth_type=principal.auth_type.value if principal else "none",
            account_id=principal.account_id if principal else None,
            operation=progress.operation,
            trace=trace,
        )

    def _challenges(self, deny: Deny, credential: Credential | None) -> tuple[str, ...]:
        if deny.reason is Reason.INSUFFICIENT_SCOPE:
            scope = f', scope="{deny.scope}"' if deny.scope else ""
            return (f'Bearer realm="assets", error="insufficient_scope"{scope}',)
        if deny.reason.http_status != 401:
            return ()
        cfg = self.config
        out: list[str] = []
        if cfg.oauth.issuers or cfg.container_tokens_enabled:
            presented = credential is not None and credential.kind in (
                CredentialKind.OAUTH_JWT, CredentialKind.CONTAINER,
            )
            out.append('Bearer realm="assets"' + (', error="invalid_token"' if presented else ""))
        if cfg.api_tokens_enabled:
            out.append('Basic realm="assets"')
        if cfg.connect.enabled:
            out.append('JWT realm="assets"')
        return tuple(out)

    def _enabled(self, kind: CredentialKind) -> bool:
        cfg = self.config
        return {
            CredentialKind.OAUTH_JWT: True,
            CredentialKind.CONTAINER: cfg.container_tokens_enabled,
            CredentialKind.CONNECT: cfg.connect.enabled,
            CredentialKind.BASIC: cfg.api_tokens_enabled,
        }[kind]

    def _count_auth(self, credential: Credential, result: str) -> None:
        if self.metrics:
            self.metrics.auth_attempts.labels(kind=credential.kind.value, result=result).inc()

    async def _authenticate(
        self, request: HttpRequest, snapshot: Snapshot, progress: _Progress
    ) -> Principal:
        progress.layer = Layer.AUTHENTICATION
        try:
            credential = extract_credential(request)
        except Deny as deny:
            if deny.reason is Reason.BAD_REQUEST:  # duplicate credentials: step 3, before layer 1
                progress.layer = Layer.REQUEST
            raise
        progress.credential = credential
        if not self._enabled(credential.kind):
            raise Deny(Reason.MALFORMED_CREDENTIAL, f"{credential.kind.value} credentials are off")
        authenticator = self.authenticators.get(credential.kind)
        if authenticator is None:
            raise Deny(Reason.MALFORMED_CREDENTIAL, f"no authenticator for {credential.kind}")
        try:
            principal = await authenticator.authenticate(
                credential, request, snapshot, self.clock()
            )
        except Deny:
            self._count_auth(credential, "failure")
            raise
        self._count_auth(credential, "success")
        progress.principal = principal
        progress.passed(Layer.AUTHENTICATION, f"{principal.auth_type.value} {principal.kind.value}")
        return principal

    async def _decide(self, request: HttpRequest, did: str, progress: _Progress) -> Decision:
        assert self.router is not None
        progress.passed(Layer.REQUEST, f"{request.method} {_clip(request.path)}")
        progress.layer = Layer.ROUTE
        route = self.router.route(request)
        if isinstance(route, Unmanaged):
            if self.config.api.outside_base_paths == "allow":
                progress.trace.append(TraceStep(Layer.ROUTE, "skip", "unmanaged path allowed"))
                return Decision(
                    allowed=True, decision_id=did, passthrough=True, trace=tuple(progress.trace)
                )
            raise Deny(Reason.UNMANAGED_PATH, "path outside the managed API")
        progress.passed(Layer.ROUTE, "imports-info" if isinstance(route, ImportsInfo) else "api")

        snapshot = self.snapshots()
        principal = await self._authenticate(request, snapshot, progress)

        progress.layer = Layer.OPERATION
        match = self.router.find_operation(request, route)
        progress.operation = match.operation.name
        progress.passed(Layer.OPERATION, match.operation.name)

        progress.layer = Layer.PERMISSION
        check_api_permission(principal, match, route, snapshot)
        progress.passed(Layer.PERMISSION)

        progress.layer = Layer.TARGET
        target, snapshot = await self._resolve(match, route, request, snapshot, principal)
        progress.passed(Layer.TARGET, _describe(target))

        progress.layer = Layer.ROLE
        grant = authorize(principal, match, target, snapshot)
        progress.passed(Layer.ROLE, grant.role or "no role needed")

        return Decision(
            allowed=True,
            decision_id=did,
            layer=Layer.ROLE,
            identity=identity_headers(principal, target, grant),
            upstream_path=(
                without_jwt_parameter(request.raw_path, request.raw_query)
                if principal.via_query_jwt
                else None
            ),
            auth_type=principal.auth_type.value,
            account_id=principal.account_id,
            operation=match.operation.name,
            trace=tuple(progress.trace),
        )


    async def _resolve(
        self,
        match: OperationMatch,
        route: Route,
        request: HttpRequest,
        snapshot: Snapshot,
        principal: Principal,
    ) -> tuple[Target, Snapshot]:
        """Resolve the target; ids the store does not index go to the live resolver."""
        for _ in range(_MAX_RESOLVER_HOPS):
            try:
                return resolve_target(match, route, request, snapshot, principal), snapshot
            except UnknownTarget as missing:
                if self.resolver is None or not isinstance(route, Managed):
                    raise
                snapshot = await self.resolver.augment(snapshot, missing, route.workspace_id)
        return resolve_target(match, route, request, snapshot, principal), snapshot


def _clip(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """Bound what request data can add to a log line."""
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(target: Target) -> str:
    parts = [f"{target.kind.value}", f"workspace={target.workspace_id}"]
    if target.schema_id:
        parts.append(f"schema={target.schema_id}")
    if target.type_id:
        parts.append(f"type={target.type_id}")
    return " ".join(parts)


def identity_headers(principal: Principal, target: Target, grant: RoleGrant) -> dict[str, str]:
    """Identity facts for the upstream, keyed by header suffix (prefix added by response.py)."""
    out = {
        "auth-type": principal.auth_type.value,
        "principal": principal.kind.value,
        "workspace-id": target.workspace_id,
    }
    if principal.kind is not PrincipalKind.CONTAINER and principal.account_id:
        out["account-id"] = principal.account_id
    if grant.role:
        out["role"] = grant.role
    if principal.app_key:
        out["app-key"] = principal.app_key
    if principal.impersonated:
        out["impersonated"] = "true"
    if principal.import_source_id:
        out["import-source-id"] = principal.import_source_id
    if grant.readable_schemas:
        out["readable-schemas"] = ",".join(grant.readable_schemas)
    if grant.readable_types and grant.readable_schemas != ("*",):
        out["readable-object-types"] = ",".join(grant.readable_types)
    return out


__all__ = ["Engine", "Managed", "identity_headers", "new_decision_id"]
