"""An sshd whose listener stopped while its sessions live on is seen once a login is old.

`systemctl stop ssh` ends the listening sshd but leaves every session process running, so a
cached login keeps answering. The pool trusts a login for at most `max_age_s`; the first
check after that logs in afresh and finds nobody listening (REFUSED). The sshd here is the
test's own, on the session's test user, so stopping it touches no other test.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.connections.sshpool import TransportPool
from agent.core.credentials import SecretResolver, generate_key
from agent.core.results import ErrorClass, Status
from agent.probes import ssh
from tests.support.network import free_port
from tests.support.sshd import SshServer, sshd_config, wait_for_banner, write_keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MAX_AGE_S = 30.0


@dataclass
class PrivateSshd:
    """An sshd that only this test starts and stops, and a login to it."""

    port: int
    host_key: str
    private_key: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def private_sshd(sshd: SshServer) -> Iterator[PrivateSshd]:
    workdir = Path(tempfile.mkdtemp(prefix="agent-sshd-own-"))
    workdir.chmod(0o755)
    host_key, private_key, _ = write_keys(workdir, "unused-passphrase")
    port = free_port()
    config = sshd_config(workdir, port, free_port(), sshd.username)
    log = workdir / "sshd.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=log_file, stderr=log_file
        )
    wait_for_banner(process, port, log)
    yield PrivateSshd(port, host_key, private_key, process)
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stopped_listener_is_seen_once_the_cached_login_is_max_age_old(sshd, private_sshd):
    resolver = SecretResolver(generate_key())
    clock = Clock()
    pool = TransportPool(clock=clock, max_age_s=MAX_AGE_S)
    config = {
        "username": sshd.username,
        "private_key": resolver.encrypt(private_sshd.private_key),
        "host_key": private_sshd.host_key,
    }

    def check():
        return ssh.from_instance("127.0.0.1", private_sshd.port, config, resolver, 5.0, pool=pool)

    try:
        assert check().run().status is Status.OK
        private_sshd.process.terminate()  # the listener only: the session process lives on
        private_sshd.process.wait(timeout=10)
        clock.now += MAX_AGE_S / 2
        assert check().run().status is Status.OK  # still a young login: trusted
        clock.now += MAX_AGE_S
        result = check().run()
        assert (result.status, result.error_class) == (Status.CRITICAL, ErrorClass.REFUSED)
        assert pool.stats().aged == 1
    finally:
        pool.clear()
