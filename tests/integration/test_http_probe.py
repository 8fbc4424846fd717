import datetime as dt
import ipaddress
import json
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.core.credentials import SecretResolver, generate_key
from agent.core.results import ErrorClass, Status
from agent.probes import http
from tests.support.network import serving_http

pytestmark = pytest.mark.timeout(30)

TOKEN = "canary-bearer-5f1e"
SLOW_S = 3.0


class Handler(BaseHTTPRequestHandler):
    """/ is fine, /fail is a 500, /slow answers late, /private wants the bearer token."""

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(SLOW_S)
        status = {"/fail": 500, "/missing": 404}.get(self.path, 200)
        if self.path == "/private" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            status = 401
        try:
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the probe never reads the body, or gave up waiting

    def log_message(self, format, *args):
        pass


@dataclass(frozen=True)
class HttpsServer:
    url: str
    ca_bundle: Path
    not_after: dt.datetime


def serving(context: ssl.SSLContext | None = None):
    return serving_http(Handler, context)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path, days_valid: int) -> tuple[Path, Path, Path, dt.datetime]:
    """A CA, and a certificate for 127.0.0.1 signed by it that expires in `days_valid` days."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = (
        x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    not_after = now + dt.timedelta(days=days_valid, hours=1)
    leaf = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return *paths, not_after


@contextmanager
def serving_https(directory: Path, days_valid: int):
    ca, cert, key, not_after = make_certificates(directory, days_valid)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serving(context) as port:
        yield HttpsServer(f"https://127.0.0.1:{port}/", ca, not_after)


@pytest.fixture(scope="module")
def http_port():
    with serving() as port:
        yield port


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    with serving_https(tmp_path_factory.mktemp("tls"), days_valid=90) as server:
        yield server


@pytest.fixture(scope="module")
def expiring_https_server(tmp_path_factory):
    with serving_https(tmp_path_factory.mktemp("tls-expiring"), days_valid=5) as server:
        yield server


@pytest.fixture
def resolver():
    return SecretResolver(generate_key())


def probe(resolver, port=None, timeout_s=5.0, **config):
    return http.from_instance("127.0.0.1", port, config, resolver, timeout_s)


def test_a_healthy_page_is_ok_with_its_timing_phases(resolver, http_port):
    result = probe(resolver, http_port).run()
    assert result.status is Status.OK, result.message
    assert result.facts["status_code"] == 200
    assert result.facts["connect_ms"] >= 0
    assert result.facts["first_byte_ms"] >= 0
    assert "tls_ms" not in result.facts


def test_a_server_error_is_critical(resolver, http_port):
    result = probe(resolver, http_port, path="/fail").run()
    assert result.status is Status.CRITICAL
    assert result.checks["http.status"] is Status.CRITICAL
    assert "500" in result.message


def test_an_expected_status_other_than_2xx_can_be_accepted(resolver, http_port):
    result = probe(resolver, http_port, path="/missing", expected_status=[404]).run()
    assert result.status is Status.OK


def test_a_slow_server_times_out_within_the_timeout(resolver, http_port):
    started = time.monotonic()
    result = probe(resolver, http_port, path="/slow", timeout_s=0.5).run()
    assert result.error_class is ErrorClass.TIMEOUT
    assert time.monotonic() - started < SLOW_S


def test_a_closed_port_is_refused(resolver, closed_port):
    result = probe(resolver, closed_port).run()
    assert result.error_class is ErrorClass.REFUSED
    assert result.status is Status.CRITICAL


def test_a_silent_port_times_out(resolver, silent_port):
    result = probe(resolver, silent_port, timeout_s=0.5).run()
    assert result.error_class is ErrorClass.TIMEOUT


def test_an_unknown_host_is_a_dns_error(resolver):
    result = http.from_instance("no-such-host.invalid", 80, {}, resolver, 5.0).run()
    assert result.error_class is ErrorClass.DNS


def test_the_bearer_token_is_sent_but_never_reported(resolver, http_port):
    good = probe(resolver, http_port, path="/private", bearer_token=resolver.encrypt(TOKEN)).run()
    assert good.status is Status.OK
    denied = probe(resolver, http_port, path="/private").run()
    assert denied.status is Status.CRITICAL
    assert TOKEN not in json.dumps(good.as_dict()) + json.dumps(denied.as_dict())


def test_an_authorization_header_in_clear_is_a_config_error(resolver, http_port):
    result = probe(resolver, http_port, headers={"Authorization": f"Bearer {TOKEN}"}).run()
    assert result.error_class is ErrorClass.CONFIG
    assert TOKEN not in json.dumps(result.as_dict())


def test_a_self_signed_certificate_fails_verification_without_its_ca(resolver, https_server):
    result = probe(resolver, url=https_server.url).run()
    assert result.error_class is ErrorClass.TLS
    assert result.status is Status.ERROR


def test_a_certificate_verifies_with_its_ca_bundle_and_reports_its_expiry(resolver, https_server):
    result = probe(resolver, url=https_server.url, ca_bundle=str(https_server.ca_bundle)).run()
    assert result.status is Status.OK, result.message
    assert result.facts["cert_days_left"] == 90
    assert result.facts["cert_not_after"] == https_server.not_after.isoformat()
    assert result.facts["tls_ms"] >= 0


def test_a_certificate_expiring_within_two_weeks_is_a_warning(resolver, expiring_https_server):
    server = expiring_https_server
    result = probe(resolver, url=server.url, ca_bundle=str(server.ca_bundle)).run()
    assert result.status is Status.WARNING
    assert result.checks["http.certificate"] is Status.WARNING
    assert result.facts["cert_days_left"] == 5


def test_verification_can_be_turned_off_and_expiry_is_still_reported(resolver, https_server):
    result = probe(resolver, url=https_server.url, verify_tls=False).run()
    assert result.status is Status.OK
    assert result.facts["cert_days_left"] == 90


def test_a_missing_ca_bundle_is_a_config_error(resolver, https_server, tmp_path):
    result = probe(resolver, url=https_server.url, ca_bundle=str(tmp_path / "none.pem")).run()
    assert result.error_class is ErrorClass.CONFIG


def test_a_url_with_an_unknown_scheme_is_a_config_error(resolver):
    result = probe(resolver, url="gopher://127.0.0.1/").run()
    assert result.error_class is ErrorClass.CONFIG
