import json
import os
import threading
import time
from functools import partial

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.connections import sshpool
from agent.connections.known_hosts import MemoryKnownHosts, host_entry
from agent.connections.sshpool import TransportPool, clear_default_pool
from agent.core.credentials import SecretResolver, generate_key
from agent.core.results import ErrorClass, Status
from agent.probes import probe_for, ssh
from tests.support.sshd import SshServer, public_key_line

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def resolver() -> SecretResolver:
    return SecretResolver(generate_key())


@pytest.fixture
def transport_pool():
    pool = TransportPool()
    yield pool
    pool.clear()


@pytest.fixture
def known_hosts() -> MemoryKnownHosts:
    return MemoryKnownHosts()


@pytest.fixture
def make_probe(sshd: SshServer, resolver, transport_pool, known_hosts):
    """Build an SSH probe against the test sshd; keyword arguments override connection_config.

    The key is encrypted once, as it is stored once in an instance's row: a login is
    identified by its stored secret references.
    """
    private_key = resolver.encrypt(sshd.private_key)

    def make(*, port=None, timeout_s=10.0, store=None, **overrides):
        config = {
            "username": sshd.username,
            "private_key": private_key,
            "host_key": sshd.host_key,
            **overrides,
        }
        config = {name: value for name, value in config.items() if value is not None}
        return ssh.from_instance(
            sshd.host,
            port or sshd.port,
            config,
            resolver,
            timeout_s,
            known_hosts=store or known_hosts,
            pool=transport_pool,
        )

    return make


def sessions_opened(sshd: SshServer) -> int:
    return len(sshd.sessions_log.read_text().splitlines()) if sshd.sessions_log.exists() else 0


def other_host_key() -> str:
    return public_key_line(ed25519.Ed25519PrivateKey.generate())


def meminfo_kib(name: str) -> int:
    with open("/proc/meminfo") as meminfo:
        line = next(line for line in meminfo if line.startswith(f"{name}:"))
    return int(line.split()[1])


def test_key_login_reports_the_facts_of_the_real_machine(make_probe):
    result = make_probe().run()
    assert result.status is Status.OK, result.message
    facts = result.facts
    assert facts["os_type"] == "linux"
    assert facts["kernel"] == os.uname().release
    assert facts["cpu_count"] == len(os.sched_getaffinity(0))
    assert facts["memory_total_bytes"] == meminfo_kib("MemTotal") * 1024
    statvfs = os.statvfs("/")
    assert abs(facts["disk_total_bytes"] - statvfs.f_blocks * statvfs.f_frsize) < 1024 * 1024
    assert facts["uptime_s"] > 0
    assert {"load_1", "load_5", "load_15", "os_name", "os_version"} <= facts.keys()
    assert result.checks == {"ssh.can_connect": Status.OK, "ssh.facts": Status.OK}


def test_password_login_works(make_probe, sshd, resolver):
    result = make_probe(private_key=None, password=resolver.encrypt(sshd.password)).run()
    assert result.status is Status.OK, result.message


def test_an_encrypted_pem_rsa_key_logs_in_with_its_passphrase(make_probe, sshd, resolver):
    result = make_probe(
        private_key=resolver.encrypt(sshd.rsa_private_key),
        private_key_passphrase=resolver.encrypt(sshd.rsa_passphrase),
    ).run()
    assert result.status is Status.OK, result.message


def test_an_encrypted_key_without_its_passphrase_is_a_config_error(make_probe, sshd, resolver):
    result = make_probe(private_key=resolver.encrypt(sshd.rsa_private_key)).run()
    assert result.error_class is ErrorClass.CONFIG


def test_a_wrong_password_is_an_auth_error_that_never_shows_the_password(make_probe, resolver):
    canary = "canary-Zq81-wrong-password"
    result = make_probe(private_key=None, password=resolver.encrypt(canary)).run()
    assert result.error_class is ErrorClass.AUTH
    assert result.status is Status.ERROR
    assert canary not in json.dumps(result.as_dict())


def test_a_clear_text_password_is_refused_and_not_echoed(make_probe):
    canary = "canary-clear-text-7731"
    result = make_probe(private_key=None, password=canary).run()
    assert result.error_class is ErrorClass.CONFIG
    assert canary not in json.dumps(result.as_dict())


def test_a_missing_environment_secret_is_a_config_error(make_probe):
    result = make_probe(private_key="env:AGENT_SECRET_TEST_NO_SUCH_VARIABLE").run()
    assert result.error_class is ErrorClass.CONFIG
    assert "AGENT_SECRET_TEST_NO_SUCH_VARIABLE" in result.message


def test_a_config_without_username_is_a_config_error(make_probe):
    result = make_probe(username="").run()
    assert result.error_class is ErrorClass.CONFIG


def test_an_unknown_host_key_is_refused_without_trust_on_first_use(make_probe, sshd, known_hosts):
    before = sessions_opened(sshd)
    result = make_probe(host_key=None).run()
    assert result.error_class is ErrorClass.HOST_KEY
    assert "unknown" in result.message
    assert known_hosts.get(host_entry(sshd.host, sshd.port)) is None
    assert sessions_opened(sshd) == before


def test_trust_on_first_use_records_the_key_and_the_next_run_checks_it(
    make_probe, sshd, known_hosts
):
    first = make_probe(host_key=None, trust_on_first_use=True).run()
    assert first.status is Status.OK, first.message
    assert known_hosts.get(host_entry(sshd.host, sshd.port)) == sshd.host_key
    second = make_probe(host_key=None).run()
    assert second.status is Status.OK, second.message


def test_a_changed_pinned_host_key_is_refused_before_any_command(make_probe, sshd, password_probe):
    before = sessions_opened(sshd)
    result = password_probe(host_key=other_host_key()).run()
    assert result.error_class is ErrorClass.HOST_KEY
    assert "expected SHA256:" in result.message
    assert "presented SHA256:" in result.message
    assert sshd.password not in json.dumps(result.as_dict())
    assert sessions_opened(sshd) == before
    assert make_probe().run().status is Status.OK  # the marker does count real sessions
    assert sessions_opened(sshd) == before + 1


def test_a_host_key_that_differs_from_the_record_is_refused(make_probe, sshd, known_hosts):
    known_hosts.remember(host_entry(sshd.host, sshd.port), other_host_key())
    result = make_probe(host_key=None, trust_on_first_use=True).run()
    assert result.error_class is ErrorClass.HOST_KEY
    assert "changed" in result.message


@pytest.fixture
def password_probe(make_probe, sshd, resolver):
    def make(**overrides):
        return make_probe(private_key=None, password=resolver.encrypt(sshd.password), **overrides)

    return make


def test_a_closed_port_is_refused_at_once(make_probe, closed_port):
    result = make_probe(port=closed_port).run()
    assert result.error_class is ErrorClass.REFUSED
    assert result.status is Status.CRITICAL
    assert result.latency_ms < 1000


def test_a_port_that_never_speaks_times_out_within_the_timeout(make_probe, silent_port):
    started = time.monotonic()
    result = make_probe(port=silent_port, timeout_s=1.0).run()
    assert result.error_class is ErrorClass.TIMEOUT
    assert time.monotonic() - started < 1.5


def test_a_port_that_speaks_garbage_is_a_protocol_error(make_probe, garbage_port):
    result = make_probe(port=garbage_port, timeout_s=5.0).run()
    assert result.error_class is ErrorClass.PROTOCOL


def test_endless_output_is_cut_at_the_cap_and_reported(make_probe, sshd):
    started = time.monotonic()
    result = make_probe(port=sshd.chatty_port).run()
    assert result.status is Status.WARNING
    assert result.checks["ssh.facts"] is Status.WARNING
    assert "cut" in result.message
    assert time.monotonic() - started < 5


def test_a_second_check_reuses_the_login_and_is_much_faster(make_probe, transport_pool):
    cold = make_probe().run()
    warm = make_probe().run()
    assert (cold.status, warm.status) == (Status.OK, Status.OK)
    stats = transport_pool.stats()
    assert (stats.misses, stats.hits, stats.size) == (1, 1, 1)
    assert warm.latency_ms < cold.latency_ms / 2


def test_different_credentials_never_share_a_login(make_probe, password_probe, transport_pool):
    assert make_probe().run().status is Status.OK
    assert password_probe().run().status is Status.OK
    assert transport_pool.stats().misses == 2


def test_a_dead_cached_login_is_replaced_transparently(make_probe, transport_pool):
    assert make_probe().run().status is Status.OK
    for entry in transport_pool._entries.values():  # the server side drops the connection
        entry.transport.sock.shutdown(2)
    time.sleep(0.3)
    result = make_probe().run()
    assert result.status is Status.OK, result.message
    assert transport_pool.stats().discarded == 1


def test_concurrent_checks_of_one_host_make_one_login(make_probe, transport_pool):
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(make_probe().run())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result.status for result in results] == [Status.OK] * 8
    assert transport_pool.stats().misses == 1


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_an_idle_login_expires_and_is_closed(sshd, resolver, known_hosts):
    known_hosts.remember(host_entry(sshd.host, sshd.port), sshd.host_key)
    clock = Clock()
    pool = TransportPool(idle_s=60, clock=clock)
    config = {"username": sshd.username, "password": resolver.encrypt(sshd.password)}
    make = partial(ssh.from_instance, sshd.host, sshd.port, config, resolver, 10.0)
    assert make(known_hosts=known_hosts, pool=pool).run().status is Status.OK
    transport = next(iter(pool._entries.values())).transport
    clock.now += 61
    assert make(known_hosts=known_hosts, pool=pool).run().status is Status.OK
    assert (pool.stats().evicted, pool.stats().misses) == (1, 2)
    assert not transport.is_active()
    pool.clear()


def test_the_least_recently_used_login_is_evicted_past_the_bound(sshd, resolver, known_hosts):
    known_hosts.remember(host_entry(sshd.host, sshd.port), sshd.host_key)
    pool = TransportPool(max_size=1)
    key_config = {"username": sshd.username, "private_key": resolver.encrypt(sshd.private_key)}
    password_config = {"username": sshd.username, "password": resolver.encrypt(sshd.password)}
    for config in (key_config, password_config):
        probe = ssh.from_instance(
            sshd.host, sshd.port, config, resolver, 10.0, known_hosts=known_hosts, pool=pool
        )
        assert probe.run().status is Status.OK
    assert (pool.stats().size, pool.stats().evicted) == (1, 1)
    pool.clear()


def test_the_probe_factory_builds_ssh_probes_with_the_workers_known_hosts(sshd, resolver):
    store = MemoryKnownHosts()
    config = {"username": sshd.username, "password": resolver.encrypt(sshd.password)}
    config["trust_on_first_use"] = True
    try:
        probe = probe_for("ssh", sshd.host, sshd.port, config, resolver, 10.0, known_hosts=store)
        result = probe.run()
    finally:
        clear_default_pool()
    assert result.status is Status.OK, result.message
    assert store.get(host_entry(sshd.host, sshd.port)) == sshd.host_key


def test_a_check_on_a_cached_login_does_not_parse_the_private_key(
    make_probe, transport_pool, monkeypatch
):
    parsed = []
    load = ssh.load_private_key
    monkeypatch.setattr(ssh, "load_private_key", lambda *a: parsed.append(1) or load(*a))
    statuses = [make_probe().run().status for _ in range(3)]
    assert statuses == [Status.OK] * 3
    assert (len(parsed), transport_pool.stats().hits) == (1, 2)


def test_a_check_on_a_cached_login_decrypts_no_secret(
    make_probe, resolver, transport_pool, monkeypatch
):
    decrypted = []
    decrypt = resolver._decrypt
    monkeypatch.setattr(resolver, "_decrypt", lambda token: decrypted.append(1) or decrypt(token))
    statuses = [make_probe().run().status for _ in range(3)]
    assert statuses == [Status.OK] * 3
    assert (len(decrypted), transport_pool.stats().hits) == (1, 2)


def test_a_changed_secret_reference_makes_a_new_login(make_probe, sshd, resolver, transport_pool):
    assert make_probe().run().status is Status.OK
    assert make_probe(private_key=resolver.encrypt(sshd.private_key)).run().status is Status.OK
    assert (transport_pool.stats().misses, transport_pool.stats().hits) == (2, 0)


def test_a_cached_login_sleeps_while_idle_and_its_thread_ends_as_soon_as_it_closes(
    make_probe, transport_pool
):
    assert make_probe().run().status is Status.OK
    transport = next(iter(transport_pool._entries.values())).transport
    assert transport.sock.gettimeout() == sshpool.IDLE_WAKEUP_S
    started = time.monotonic()
    transport_pool.clear()
    transport.join(timeout=2)
    assert not transport.is_alive()
    assert time.monotonic() - started < 1.0


def test_checks_on_a_cached_login_run_in_one_kept_shell(make_probe, sshd, transport_pool):
    before = sessions_opened(sshd)
    results = [make_probe().run() for _ in range(4)]
    assert [result.status for result in results] == [Status.OK] * 4
    assert {frozenset(result.facts) for result in results} == {frozenset(results[0].facts)}
    assert results[-1].facts["os_type"] == "linux"
    assert sessions_opened(sshd) - before == 1


def test_a_kept_shell_that_exited_is_replaced_on_the_same_login(make_probe, transport_pool):
    assert make_probe().run().status is Status.OK
    transport = next(iter(transport_pool._entries.values())).transport
    [shell] = transport.idle_shells
    shell.sendall(b"exit\n")  # the remote shell ends; the login stays
    shell.status_event.wait(5)
    result = make_probe().run()
    assert result.status is Status.OK, result.message
    assert (transport_pool.stats().misses, transport_pool.stats().hits) == (1, 1)
    assert len(transport.idle_shells) == 1
    assert transport.idle_shells[0] is not shell
