"""Python modules for pipeserve's gRPC contracts, compiled from protos/ when they are needed.

The .proto files are the source of truth; nothing generated is kept in the repository. Either
compiler works:

- ``protoc`` with ``grpc_python_plugin`` (Debian: ``protobuf-compiler-grpc``), used when both
  are on PATH;
- ``python3 -m grpc_tools.protoc`` (Debian: ``python3-grpc-tools``, or pip's ``grpcio-tools``).

Run as a script to write the modules into a folder of your own instead:
``python3 pipeserve_protos.py OUT_DIR``.
"""

import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

PROTOS_DIR = Path(__file__).resolve().parents[2] / "protos"
# What a client of the public services needs: the tokenizer, the coordinator, and what they import.
CLIENT_PROTOS = ("token_logprob.proto", "tokenizer.proto", "coordinator.proto")


def compiler_command() -> list:
    """The protoc invocation to use, without its arguments."""
    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if protoc is not None and plugin is not None:
        return [protoc, f"--plugin=protoc-gen-grpc_python={plugin}"]
    try:
        importlib.import_module("grpc_tools.protoc")
    except ImportError:
        raise SystemExit(
            "no proto compiler for Python: install protobuf-compiler-grpc (apt) for protoc and "
            "grpc_python_plugin, or python3-grpc-tools (apt) / grpcio-tools (pip)"
        ) from None
    return [sys.executable, "-m", "grpc_tools.protoc"]


def compile_protos(out_dir: Path, protos_dir: Path = PROTOS_DIR, files=CLIENT_PROTOS) -> None:
    """Writes <name>_pb2.py and <name>_pb2_grpc.py for each file into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*compiler_command(), f"-I{protos_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *files],
        check=True,
    )


def load(protos_dir: Path = PROTOS_DIR) -> SimpleNamespace:
    """Compiles the client's protos into a temporary folder, imports them, and removes the folder.

    Returns the modules as attributes: tokenizer_pb2, tokenizer_pb2_grpc, coordinator_pb2,
    coordinator_pb2_grpc, token_logprob_pb2.
    """
    out_dir = Path(tempfile.mkdtemp(prefix="pipeserve-py-"))
    try:
        compile_protos(out_dir, protos_dir)
        # The generated modules import each other by top-level name (coordinator_pb2 imports token_logprob_pb2).
        sys.path.insert(0, str(out_dir))
        names = [f"{Path(f).stem}{suffix}" for f in CLIENT_PROTOS for suffix in ("_pb2", "_pb2_grpc")]
        return SimpleNamespace(**{name: importlib.import_module(name) for name in names})
    finally:
        if str(out_dir) in sys.path:
            sys.path.remove(str(out_dir))
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} OUT_DIR")
    compile_protos(Path(sys.argv[1]))
    print(f"wrote the modules of {', '.join(CLIENT_PROTOS)} to {sys.argv[1]}")
