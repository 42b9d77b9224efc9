"""Regenerate the committed Python stubs in hermes/v1/ from proto/hermes/v1/*.proto.

The stubs are committed (so an SDK user needs no grpcio-tools), hence CI must
notice when they are stale: `--check` regenerates into a temporary directory
and exits 1 if anything differs from what is committed.

    PYTHONPATH=. python scripts/gen_protos.py          # rewrite hermes/v1/*_pb2*.py, *.pyi
    PYTHONPATH=. python scripts/gen_protos.py --check  # exit 1 when stale
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("hermes") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc (from grpcio-tools) on every proto, writing under out_dir/hermes/v1/."""
    from importlib.resources import files

    from grpc_tools import protoc

    well_known = str(files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_names(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def stale_files(committed: Path, fresh: Path) -> list[str]:
    """Names that are missing, extra or different in `committed` compared with `fresh`."""
    names_c, names_f = generated_names(committed), generated_names(fresh)
    out = sorted(names_c ^ names_f)
    for name in sorted(names_c & names_f):
        if not filecmp.cmp(committed / name, fresh / name, shallow=False):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed stubs are stale")
    args = parser.parse_args(argv)
    target = ROOT / PACKAGE_DIR
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / PACKAGE_DIR
        stale = stale_files(target, fresh)
        if args.check:
            if stale:
                print("stale generated stubs (run scripts/gen_protos.py): " + ", ".join(stale))
                return 1
            print(f"stubs up to date ({len(generated_names(fresh))} files)")
            return 0
        for name in generated_names(target) - generated_names(fresh):
            (target / name).unlink()
        for name in sorted(generated_names(fresh)):
            (target / name).write_bytes((fresh / name).read_bytes())
        print(f"wrote {len(generated_names(fresh))} files to {PACKAGE_DIR}/ ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
