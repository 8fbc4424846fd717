"""HTTP sessions and their TLS contexts are built once per process, not once per check."""

import os
from pathlib import Path

import certifi

from agent.probes import http
from agent.probes.aio import run_on_loop


def client_of(**config):
    async def on_the_loop():
        return http.shared_session(http.Config.model_validate({"host": "example.test", **config}))

    return run_on_loop(on_the_loop())


def test_checks_with_the_same_tls_settings_share_one_client():
    assert client_of() is client_of()
    assert client_of(verify_tls=False) is client_of(verify_tls=False)
    assert client_of() is not client_of(verify_tls=False)


def test_a_ca_bundle_gets_its_own_client_rebuilt_when_the_file_changes(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    first = client_of(ca_bundle=str(bundle))
    assert client_of(ca_bundle=str(bundle)) is first
    assert first is not client_of()
    stat = bundle.stat()
    os.utime(bundle, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert client_of(ca_bundle=str(bundle)) is not first
