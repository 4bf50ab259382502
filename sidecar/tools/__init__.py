"""Operator and developer tools shipped with the sidecar."""
