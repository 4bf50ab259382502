"""`make proto`: compile proto/ with grpcio-tools into sidecar/_proto (or check it is fresh).

Envoy's .proto sources are not shipped by xds-protos, so their compiled descriptors are
exported into a FileDescriptorSet and handed to protoc with --descriptor_set_in.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
PROTOS = ["sidecar/_proto/explain.proto"]
OUTPUTS = ["explain_pb2.py", "explain_pb2.pyi", "explain_pb2_grpc.py"]


def _descriptor_set() -> bytes:
    from envoy.service.auth.v3 import external_auth_pb2

    seen: dict[str, FileDescriptor] = {}

    def walk(fd: FileDescriptor) -> None:
        if fd.name in seen:
            return
        for dep in fd.dependencies:
            walk(dep)
        seen[fd.name] = fd

    walk(external_auth_pb2.DESCRIPTOR)
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in seen.values():
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        fds.file.append(proto)
    data: bytes = fds.SerializeToString()
    return data


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        desc = Path(tmp) / "deps.pb"
        desc.write_bytes(_descriptor_set())
        args = [
            "protoc",
            f"--descriptor_set_in={desc}",
            f"-I{PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *PROTOS,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")


def stale() -> list[str]:
    """Names of committed generated files that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / "sidecar" / "_proto"
        committed = ROOT / "sidecar" / "_proto"
        return [
            n for n in OUTPUTS
            if not (committed / n).exists()
            or not filecmp.cmp(fresh / n, committed / n, shallow=False)
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="protogen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        if names:
            print("stale generated code: " + ", ".join(names), file=sys.stderr)
            return 1
        return 0
    generate(ROOT)
    print("generated " + ", ".join(f"sidecar/_proto/{n}" for n in OUTPUTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
