"""Request → managed route (base path, workspace) → operation, compiled once from `api` config."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.config import ApiConfig
from sidecar.decision import Deny, Reason
from sidecar.operations.table import (
    IMPORTS_INFO,
    TABLE,
    MatchStatus,
    OperationMatch,
    OperationTable,
)
from sidecar.request import HttpRequest

WORKSPACE_PLACEHOLDER = "{workspaceId}"


@dataclass(frozen=True)
class Unmanaged:
    """Outside every base path and the imports-info path."""


@dataclass(frozen=True)
class ImportsInfo:
    """The container-token-only `api.imports_info_path` (no workspace in the path)."""


@dataclass(frozen=True)
class Managed:
    """Under a base path: the workspace named by the path and the segments after the base."""

    workspace_id: str
    rest: tuple[str, ...]


Route = Unmanaged | ImportsInfo | Managed


@dataclass(frozen=True)
class _Template:
    """A base path: literal segments, and at `index` the segment holding `{workspaceId}`."""

    segments: tuple[str, ...]  # casefolded literals; the workspace segment as configured
    index: int
    prefix: str  # text around the placeholder inside its segment (usually both empty)
    suffix: str

    def match(self, segments: tuple[str, ...]) -> Managed | None:
        n = len(self.segments)
        if len(segments) < n:
            return None
        workspace = ""
        for i, (want, got) in enumerate(zip(self.segments, segments, strict=False)):
            if i == self.index:
                workspace = _capture(got, self.prefix, self.suffix)
                if not workspace:
                    return None
            elif _fold(got) != want:
                return None
        return Managed(workspace, segments[n:])


def _fold(segment: str) -> str:
    # Same case-insensitivity as the operation table: a different spelling of a managed path
    # is still managed (never passed through unauthenticated).
    return segment.casefold()


def _capture(segment: str, prefix: str, suffix: str) -> str:
    if len(segment) <= len(prefix) + len(suffix):
        return ""
    head, tail = segment[: len(prefix)], segment[len(segment) - len(suffix) :]
    if _fold(head) != prefix or _fold(tail) != suffix:
        return ""
    return segment[len(prefix) : len(segment) - len(suffix)]


def _split(path: str, what: str) -> tuple[str, ...]:
    if not path.startswith("/") or path.endswith("/") or "//" in path:
        raise ValueError(f"{what}: {path!r} must start with '/', not end with '/', no '//'")
    return tuple(path[1:].split("/"))


def _template(path: str) -> _Template:
    segments = _split(path, "base path")
    holders = [i for i, seg in enumerate(segments) if WORKSPACE_PLACEHOLDER in seg]
    if len(holders) != 1 or path.count(WORKSPACE_PLACEHOLDER) != 1:
        raise ValueError(f"base path {path!r} must contain {WORKSPACE_PLACEHOLDER} exactly once")
    index = holders[0]
    prefix, _, suffix = segments[index].partition(WORKSPACE_PLACEHOLDER)
    folded = tuple(
        seg if i == index else _fold(seg) for i, seg in enumerate(segments)
    )
    return _Template(folded, index, _fold(prefix), _fold(suffix))


class Router:
    """Which part of the API a request is for, and which operation of the table it asks for."""

    def __init__(self, api: ApiConfig, table: OperationTable = TABLE) -> None:
        # Longest base path first, so a base path nested in another never steals its requests.
        templates = [_template(p) for p in api.base_paths]
        self._templates = tuple(sorted(templates, key=lambda t: -len(t.segments)))
        self._imports_info = tuple(_fold(s) for s in _split(api.imports_info_path, "imports"))
        self._table = table

    def route(self, request: HttpRequest) -> Route:
        """Classify the request by its decoded path segments."""
        segments = request.segments
        folded = tuple(_fold(s) for s in segments)
        if folded == self._imports_info or folded == (*self._imports_info, ""):
            return ImportsInfo()
        for template in self._templates:
            managed = template.match(segments)
            if managed is not None:
                return managed
        return Unmanaged()

    def find_operation(self, request: HttpRequest, route: Route) -> OperationMatch:
        """The operation a routed request asks for, or Deny(unknown_operation)."""
        if request.segments and request.segments[-1] == "":
            raise Deny(Reason.UNKNOWN_OPERATION, "no operation ends in '/'")
        if isinstance(route, ImportsInfo):
            if request.method != "GET":
                raise Deny(Reason.UNKNOWN_OPERATION, f"{request.method} on the imports-info path")
            return OperationMatch(IMPORTS_INFO, pattern="imports_info_path")
        if isinstance(route, Unmanaged):
            raise Deny(Reason.UNKNOWN_OPERATION, "path outside the managed API")
        found = self._table.match(request.method, route.rest)
        if found.status is MatchStatus.FULL and found.match is not None:
            return found.match
        if found.status is MatchStatus.METHOD_MISMATCH:
            allowed = ", ".join(found.allowed_methods)
            raise Deny(Reason.UNKNOWN_OPERATION, f"{request.method} not allowed here ({allowed})")
        raise Deny(Reason.UNKNOWN_OPERATION, "no such operation")
