"""Tests for sidecar.roles."""
