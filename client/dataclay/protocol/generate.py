"""Regenerate the protobuf and gRPC modules from dataclay.proto (needs grpcio-tools).

    python -m dataclay.protocol.generate [OUTPUT_ROOT]

OUTPUT_ROOT defaults to the source tree (the folder that holds the `dataclay` package); the
freshness test generates into a temporary folder and compares.
"""
from __future__ import annotations

import sys
from pathlib import Path

PROTO = Path(__file__).with_name("dataclay.proto")
SOURCE_ROOT = PROTO.parents[2]  # .../client, the folder that holds the dataclay package
RELATIVE_PROTO = PROTO.relative_to(SOURCE_ROOT)


def generate(output_root: Path = SOURCE_ROOT) -> list[Path]:
    """Run protoc; return the generated files."""
    from grpc_tools import protoc

    (output_root / RELATIVE_PROTO.parent).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{SOURCE_ROOT}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        str(RELATIVE_PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO}")
    stem = RELATIVE_PROTO.with_suffix("")
    return [output_root / f"{stem}{suffix}" for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE_ROOT):
        print(path)
