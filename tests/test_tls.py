"""`hermes serve --tls-cert/--tls-key` with a real TLS client: a self-signed certificate made
here (cryptography), the SDK's `Client(tls_ca=...)`, `hermes health --tls-ca`, and plaintext
or an untrusted CA refused."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from server_fixtures import ROOT, env_with_root, self_signed, start_server

from client_sdk import Client, HermesError

pytestmark = pytest.mark.slow
x509 = pytest.importorskip("cryptography.x509")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(d, "hermes-test")
    other_ca, _ = self_signed(d, "someone-else")
    srv = start_server("--tls-cert", str(cert), "--tls-key", str(key), env={"HERMES_TOKEN": "tls-token"})
    yield srv, cert, other_ca
    assert srv.stop() == 0


def test_tls_client_drives_a_session(tls_server) -> None:
    srv, cert, _ = tls_server
    with Client(srv.address, token="tls-token", tls_ca=cert, timeout=60) as c:
        info = c.info()
        assert {"tls", "auth"} <= set(info.capabilities)
        with c.create_session("hetero-demo", stream=True) as s:
            s.inject([{"prompt_tokens": 64, "output_tokens": 8}])
            assert s.advance().events  # the request arrived (and asks to be routed), over TLS


def test_plaintext_and_untrusted_ca_are_refused(tls_server) -> None:
    srv, _, other_ca = tls_server
    with Client(srv.address, token="tls-token", timeout=5) as c, pytest.raises(HermesError) as err:
        c.info()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    with Client(srv.address, token="tls-token", tls_ca=other_ca, timeout=5) as c, pytest.raises(HermesError) as err:
        c.info()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_health_cli_speaks_tls(tls_server) -> None:
    srv, cert, _ = tls_server
    cmd = [sys.executable, "-m", "server.cli", "health", "--target", srv.address]
    ok = subprocess.run([*cmd, "--tls-ca", str(cert)], cwd=ROOT, env=env_with_root(), capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    plain = subprocess.run(cmd, cwd=ROOT, env=env_with_root(), capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1
