"""`infra-agent instances` against the real test database, checks made by the real probes."""

import json
import secrets
import shlex
import socket
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from agent.cli import migrate
from agent.cli.commands import main
from agent.cli.instance_commands import first_steps
from agent.core.settings import get_settings
from models import InfrastructureInstance
from models import session as db
from models.agent import AgentKnownHost
from models.session import session_scope
from tests.support.databases import new_database
from tests.support.network import serving_http


def cli(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def added_id(result):
    assert result.exit_code == 0, result.output
    return uuid.UUID(result.stdout.split("(", 1)[1].split(")", 1)[0])


def row(instance_id):
    with session_scope() as session:
        return session.get(InfrastructureInstance, instance_id)


def everything_stored_about(instance_id):
    """The instance row, its audit entries and its known host key, as one text."""
    with session_scope() as session:
        found = [
            session.execute(text(sql), {"id": instance_id}).scalars().all()
            for sql in (
                "SELECT row_to_json(i)::text FROM infrastructure_instances i WHERE id = :id",
                "SELECT row_to_json(a)::text FROM audit_logs a WHERE entity_id = :id",
                "SELECT row_to_json(k)::text FROM agent_known_hosts k WHERE instance_id = :id",
            )
        ]
    return "\n".join(line for lines in found for line in lines)


def listed(instance_id):
    """The line of `instances list` about one instance."""
    output = cli("instances", "list").stdout
    [line] = [line for line in output.splitlines() if str(instance_id) in line]
    return line


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def listening_port():
    """A real loopback TCP listener (the kernel accepts; nothing is ever said)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_a_tcp_instance_is_added_checked_listed_shown_and_removed(secret_key, listening_port):
    name = unique("db-port")
    added = cli("instances", "add", name, "--type", "tcp", "--host", "127.0.0.1",
                "--port", str(listening_port), "--tag", "zone:lab")  # fmt: skip
    instance_id = added_id(added)
    stored = row(instance_id)
    assert (stored.connection_type, stored.host) == ("tcp", "127.0.0.1")
    assert stored.port == listening_port
    assert (stored.type, stored.tags, stored.deleted_at) == ("vm", ["zone:lab"], None)

    assert cli("check", str(instance_id)).exit_code == 0  # a real check writes history
    line = listed(instance_id)
    assert name in line
    assert f"127.0.0.1:{listening_port}" in line
    assert row(instance_id).status in line.split()
    assert "100.0% of 1" in line

    shown = cli("instances", "show", str(instance_id)).stdout
    assert '"tcp.can_connect": "ok"' in shown  # the check document
    assert "recent checks:" in shown
    assert shown.count(" ok ") == 1  # one history row

    removed = cli("instances", "remove", str(instance_id))
    assert removed.exit_code == 0
    assert row(instance_id).deleted_at is not None  # soft delete: the row stays
    assert str(instance_id) not in cli("instances", "list").stdout
    assert cli("instances", "remove", str(instance_id)).exit_code == 1
    assert "removed:" in cli("instances", "show", str(instance_id)).stdout


def test_the_uptime_counts_the_checks_of_the_last_24_hours(secret_key, listening_port):
    added = cli("instances", "add", unique("up"), "--type", "tcp", "--host", "127.0.0.1",
                "--port", str(listening_port))  # fmt: skip
    instance_id = added_id(added)
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO instance_health_history (time, instance_id, kind, status)"
                " VALUES (now() - interval '1 hour', :id, 'tcp', 'ok'),"
                " (now() - interval '2 hours', :id, 'tcp', 'warning'),"
                " (now() - interval '3 hours', :id, 'tcp', 'critical'),"
                " (now() - interval '4 hours', :id, 'tcp', 'error'),"
                " (now() - interval '30 hours', :id, 'tcp', 'critical')"
            ),
            {"id": instance_id},
        )
    assert "50.0% of 4" in listed(instance_id)


class BearerOnly(BaseHTTPRequestHandler):
    token = ""

    def do_GET(self):
        good = self.headers.get("Authorization") == f"Bearer {self.token}"
        self.send_response(200 if good else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_secret_typed_at_the_prompt_is_stored_encrypted_used_and_never_shown(secret_key):
    token = f"tok-{secrets.token_urlsafe(16)}"
    handler = type("Handler", (BearerOnly,), {"token": token})
    with serving_http(handler) as port:
        added = cli("instances", "add", unique("api"), "--type", "http", "--host", "127.0.0.1",
                    "--port", str(port), "--secret-prompt", "bearer_token",
                    input=f"{token}\n")  # fmt: skip
        instance_id = added_id(added)
        checked = cli("check", str(instance_id))
    assert checked.exit_code == 0, checked.output  # the server took the decrypted token
    reference = row(instance_id).connection_config["bearer_token"]
    assert reference.startswith("enc:")
    assert secret_key.resolve(reference) == token
    shown = cli("instances", "show", str(instance_id)).stdout
    assert '"bearer_token": "enc:***"' in shown
    everything = added.output + checked.output + shown + everything_stored_about(instance_id)
    assert token not in everything
    assert reference not in shown


def test_a_secret_read_from_a_file_is_stored_encrypted(secret_key, tmp_path):
    token = f"tok-{secrets.token_urlsafe(16)}"
    (tmp_path / "token").write_text(f"{token}\n")
    added = cli("instances", "add", unique("api"), "--type", "http", "--host", "example.test",
                "--secret", f"bearer_token={tmp_path / 'token'}")  # fmt: skip
    instance_id = added_id(added)
    assert secret_key.resolve(row(instance_id).connection_config["bearer_token"]) == token
    assert token not in added.output + everything_stored_about(instance_id)


def instances_named(name):
    with session_scope() as session:
        query = select(InfrastructureInstance.id).where(InfrastructureInstance.name == name)
        return session.scalars(query).all()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--set", "bearer_token=CLEAR"], "bearer_token is a secret"),
        (["--set", 'headers={"Authorization": "CLEAR"}'], "put credentials in bearer_token"),
        (["--set", "scheme=gopher"], "scheme"),
        (["--secret-prompt", "path"], "path is not a secret of http"),
        (["--trust-on-first-use"], "for ssh only"),
    ],
)
def test_bad_settings_are_refused_with_a_reason_and_nothing_is_written(secret_key, args, reason):
    name = unique("bad")
    refused = cli("instances", "add", name, "--type", "http", "--host", "h.test", *args,
                  input="CLEAR\n")  # fmt: skip
    assert refused.exit_code == 2
    assert reason in refused.output
    assert "CLEAR" not in refused.output
    assert instances_named(name) == []


def test_a_plain_env_reference_may_be_set_as_a_secret_setting(secret_key):
    added = cli("instances", "add", unique("api"), "--type", "http", "--host", "h.test",
                "--set", "bearer_token=env:API_TOKEN")  # fmt: skip
    assert row(added_id(added)).connection_config["bearer_token"] == "env:API_TOKEN"


def test_a_tcp_instance_needs_its_port(secret_key):
    refused = cli("instances", "add", unique("tcp"), "--type", "tcp", "--host", "127.0.0.1")
    assert refused.exit_code == 2
    assert "port: Field required" in refused.output


def known_key(instance_id):
    with session_scope() as session:
        return session.get(AgentKnownHost, instance_id)


def add_ssh(sshd, tmp_path, *host_key_args):
    (tmp_path / "id").write_text(sshd.private_key)
    return cli("instances", "add", unique("ssh"), "--type", "ssh", "--host", sshd.host,
               "--port", str(sshd.port), "--set", f"username={sshd.username}",
               "--secret", f"private_key={tmp_path / 'id'}", *host_key_args)  # fmt: skip


def test_an_ssh_instance_without_a_host_key_choice_is_refused(sshd, secret_key, tmp_path):
    refused = add_ssh(sshd, tmp_path)
    assert refused.exit_code == 2
    assert "--trust-on-first-use" in refused.output
    assert sshd.private_key.splitlines()[1] not in refused.output
    tofu_by_setting = add_ssh(sshd, tmp_path, "--set", "trust_on_first_use=true")
    assert tofu_by_setting.exit_code == 2


def test_an_ssh_host_key_pinned_from_ssh_keyscan_output_is_used(sshd, secret_key, tmp_path):
    entry = f"[{sshd.host}]:{sshd.port}"
    keyscan = f"# {entry} SSH-2.0-OpenSSH\n{entry} {sshd.host_key}\n"
    (tmp_path / "keyscan").write_text(keyscan)
    instance_id = added_id(add_ssh(sshd, tmp_path, "--host-key-file", str(tmp_path / "keyscan")))
    assert known_key(instance_id).keyline == sshd.host_key
    assert "trust_on_first_use" not in row(instance_id).connection_config
    checked = cli("check", str(instance_id))
    assert checked.exit_code == 0, checked.output
    assert sshd.private_key.splitlines()[1] not in everything_stored_about(instance_id)


def test_a_pinned_ssh_host_key_that_does_not_match_fails_the_check(sshd, secret_key, tmp_path):
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    (tmp_path / "other.pub").write_text(f"{other} someone@elsewhere\n")
    instance_id = added_id(add_ssh(sshd, tmp_path, "--host-key-file", str(tmp_path / "other.pub")))
    checked = cli("check", str(instance_id))
    assert checked.exit_code == 1
    assert "[host_key]" in checked.output


def test_trust_on_first_use_records_the_key_the_host_presents(sshd, secret_key, tmp_path):
    instance_id = added_id(add_ssh(sshd, tmp_path, "--trust-on-first-use"))
    assert known_key(instance_id) is None
    assert cli("check", str(instance_id)).exit_code == 0
    assert known_key(instance_id).keyline == sshd.host_key


def test_a_host_key_file_without_a_key_is_refused(sshd, secret_key, tmp_path):
    (tmp_path / "empty").write_text("# nothing here\n")
    refused = add_ssh(sshd, tmp_path, "--host-key-file", str(tmp_path / "empty"))
    assert refused.exit_code == 2
    assert "no SSH public key" in refused.output


def test_show_and_list_print_hostile_names_without_terminal_escapes(secret_key, add_instance):
    instance_id = add_instance("tcp", host="h\x1b[31m", port=1)
    with session_scope() as session:  # a tenant wrote this row
        session.get(InfrastructureInstance, instance_id).name = "evil\x1b[2J\x1b]0;owned\x07"
    shown = cli("instances", "show", str(instance_id)).stdout
    assert "\x1b" not in shown + cli("instances", "list").stdout
    assert "evil?[2J" in shown


def test_a_second_instance_with_a_live_name_is_refused(secret_key, listening_port):
    name = unique("twice")
    args = ["instances", "add", name, "--type", "tcp", "--host", "127.0.0.1", "--port", "1"]
    added_id(cli(*args))
    assert cli(*args).exit_code == 2
    assert len(instances_named(name)) == 1


def test_an_unknown_instance_is_a_clear_error(database_url):
    result = cli("instances", "show", str(uuid.uuid4()))
    assert result.exit_code == 1
    assert "no instance" in result.output


def test_show_prints_the_check_document_as_json(secret_key, listening_port):
    added = cli("instances", "add", unique("doc"), "--type", "tcp", "--host", "127.0.0.1",
                "--port", str(listening_port))  # fmt: skip
    instance_id = added_id(added)
    cli("check", str(instance_id))
    shown = cli("instances", "show", str(instance_id)).stdout
    document = shown.split("  check document:\n", 1)[1].split("  recent checks:", 1)[0]
    assert json.loads(document) == row(instance_id).health_status


@pytest.fixture
def fresh_database_url(postgres_server_url, monkeypatch):
    """A migrated database with no instance in it, which the CLI uses for this test."""
    with new_database(postgres_server_url, "agent_fresh") as url:
        migrate.upgrade(url)
        monkeypatch.setenv("AGENT_DATABASE_URL", url)
        get_settings.cache_clear()
        db.dispose_engine()
        yield url
        db.dispose_engine()
    get_settings.cache_clear()


def test_up_on_an_empty_database_prints_an_add_command_that_works(fresh_database_url):
    hint = first_steps(fresh_database_url, flower_port=5555)
    [command] = [line for line in hint.splitlines() if "infra-agent instances add" in line]
    program, *args = shlex.split(command)
    assert program == "infra-agent"
    added_id(cli(*args))
    assert first_steps(fresh_database_url, flower_port=5555) is None


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--host", "h" * 256], "host must be 1 to 255 characters"),
        (["--host", "h.test", "--set", "path=/a\x00b"], "NUL characters"),
        (["--host", "h.test", "--space", str(uuid.uuid4())], "no space"),
    ],
)
def test_input_the_database_cannot_store_is_a_clear_error(database_url, args, reason):
    name = unique("unstorable")
    refused = cli("instances", "add", name, "--type", "http", *args)
    assert refused.exit_code == 2
    assert reason in refused.output
    assert instances_named(name) == []


@pytest.mark.parametrize(
    ("connection_type", "args", "reason"),
    [
        ("docker_api", ["--set", "docker_host=ftp://h.test"], "docker_host must start with"),
        ("kubernetes", [], "needs kubeconfig, or token"),
        ("kubernetes", ["--secret-prompt", "token", "--set", "api_url=http://k"], "https://"),
        ("ssh", ["--trust-on-first-use", "--set", "username=u"], "give private_key or password"),
    ],
)
def test_each_type_is_checked_by_its_own_probe_settings(secret_key, connection_type, args, reason):
    name = unique(connection_type)
    refused = cli("instances", "add", name, "--type", connection_type, "--host", "h.test", *args,
                  input="CLEAR\n")  # fmt: skip
    assert refused.exit_code == 2
    assert reason in refused.output
    assert "CLEAR" not in refused.output
    assert instances_named(name) == []


def test_a_kubernetes_token_typed_at_the_prompt_is_stored_encrypted(secret_key):
    token = f"tok-{secrets.token_urlsafe(16)}"
    added = cli("instances", "add", unique("k8s"), "--type", "kubernetes", "--host", "k.test",
                "--set", "api_url=https://k.test:6443", "--secret-prompt", "token",
                input=f"{token}\n")  # fmt: skip
    instance_id = added_id(added)
    assert row(instance_id).type == "kubernetes"
    assert secret_key.resolve(row(instance_id).connection_config["token"]) == token
    assert token not in added.output + everything_stored_about(instance_id)
