"""``ingest serve`` terminating TLS itself (INGEST_API_TLS_CERT_FILE / _KEY_FILE), with a CA and a server
certificate for 127.0.0.1 that the test makes: HTTPS answers with https links, plain HTTP on that port
gets nothing, and a key that is not the certificate's stops the server before it listens, in one line."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Stack, run_cli
from tests.integration.api import ApiDatabase, ApiServer, api_database, publish, serve_env, tls_api_server


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a certificate it signs for 127.0.0.1 (and a stray key that fits nothing)."""
    d = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem", "stray": d / "stray.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(_pem_key(key))
    paths["stray"].write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    return paths


@pytest.fixture(scope="module")
def db(stack: Stack, migrated_template: str) -> Iterator[ApiDatabase]:
    with api_database(stack, migrated_template) as d:
        publish(d.admin_dsn, "coll-tls")
        yield d


def test_serve_speaks_https_with_its_own_certificate(db: ApiDatabase, certs: dict[str, Path], tmp_path: Path) -> None:
    env = {"INGEST_API_TLS_CERT_FILE": str(certs["cert"]), "INGEST_API_TLS_KEY_FILE": str(certs["key"])}
    server: ApiServer
    with tls_api_server(db.reader_dsn, tmp_path, certs["ca"], **env) as server:
        assert server.url.startswith("https://")
        landing = requests.get(server.url + "/", verify=server.verify, timeout=10)
        assert landing.status_code == 200
        assert all(link["href"].startswith(server.url) for link in landing.json()["links"])
        coll = requests.get(server.url + "/collections/coll-tls", verify=server.verify, timeout=10)
        assert coll.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):  # an unknown CA is not trusted
            requests.get(server.url + "/", timeout=10)
        plain = server.url.replace("https://", "http://")
        try:
            answered = requests.get(plain + "/", timeout=10).status_code
        except requests.ConnectionError:
            answered = None
        assert answered in (None, 400)  # never the catalogue over plain HTTP
        assert "https://127.0.0.1" in server.output()  # the start-up line says what it serves


def test_a_key_that_is_not_the_certificates_is_refused_before_listening(
    db: ApiDatabase, certs: dict[str, Path]
) -> None:
    env = serve_env(
        db.reader_dsn, INGEST_API_TLS_CERT_FILE=str(certs["cert"]), INGEST_API_TLS_KEY_FILE=str(certs["stray"])
    )
    r = run_cli("serve", "--port", "1", env=env, timeout=60)
    assert r.returncode == 78, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: cannot serve TLS with") and str(certs["cert"]) in line
    half = serve_env(db.reader_dsn, INGEST_API_TLS_CERT_FILE=str(certs["cert"]))
    r = run_cli("serve", "--port", "1", env=half, timeout=60)
    assert r.returncode == 78 and "needs both" in r.stderr
