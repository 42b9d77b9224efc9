"""`hermes serve --tls-cert/--tls-key` with a real TLS client: a self-signed certificate made
here (cryptography), the SDK's `Client(tls_ca=...)`, `hermes health --tls-ca`, and plaintext
or an untrusted CA refused."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from server_fixtures import ROOT, env_with_root, start_server

from client_sdk import Client, HermesError

pytestmark = pytest.mark.slow
x509 = pytest.importorskip("cryptography.x509")


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(d, "hermes-test")
    other_ca, _ = _self_signed(d, "someone-else")
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
