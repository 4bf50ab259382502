"""assets-authz: an Envoy ext_authz sidecar enforcing the Assets three-layer security model."""

__version__ = "0.1.0"
