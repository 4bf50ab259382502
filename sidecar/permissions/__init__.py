"""Layer 2, API permission: pure checks of what the credential itself allows."""

from sidecar.permissions.scopes import CONNECT_RANK, check_api_permission, connect_scopes_cover

__all__ = ["CONNECT_RANK", "check_api_permission", "connect_scopes_cover"]
