"""client_sdk is a thin SDK: it imports grpc and the generated stubs, never server or sim_engine."""

from __future__ import annotations

import ast
import subprocess
import sys

from server_fixtures import ROOT, env_with_root

ALLOWED_TOP = {"grpc", "google", "hermes", "client_sdk"}


def test_sdk_sources_import_only_grpc_and_stubs() -> None:
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((ROOT / "client_sdk").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in ALLOWED_TOP or top in stdlib, f"{path.name} imports {name}"


def test_importing_the_sdk_loads_no_server_or_engine_module() -> None:
    code = ("import sys, client_sdk; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('server', 'sim_engine', 'numpy')); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env_with_root(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
