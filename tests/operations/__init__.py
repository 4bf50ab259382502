"""Tests for sidecar.operations."""
