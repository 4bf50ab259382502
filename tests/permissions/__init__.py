"""Tests for sidecar.permissions."""
