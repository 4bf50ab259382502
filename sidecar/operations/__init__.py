"""The compiled operation table and the router that maps requests onto it."""

from sidecar.operations.router import ImportsInfo, Managed, Route, Router, Unmanaged
from sidecar.operations.table import (
    ROUTES,
    TABLE,
    MatchStatus,
    Operation,
    OperationMatch,
    OperationTable,
    RouteSpec,
    TableMatch,
    TargetKind,
)

__all__ = [
    "ROUTES",
    "TABLE",
    "ImportsInfo",
    "Managed",
    "MatchStatus",
    "Operation",
    "OperationMatch",
    "OperationTable",
    "Route",
    "RouteSpec",
    "Router",
    "TableMatch",
    "TargetKind",
    "Unmanaged",
]
