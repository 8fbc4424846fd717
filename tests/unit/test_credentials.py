import os

import pytest

from agent.core.credentials import CredentialError, SecretResolver, generate_key
from agent.core.secret_scope import SecretScope

pytestmark = pytest.mark.timeout(10)

SECRET = "canary-credential-81a7"


@pytest.fixture
def resolver() -> SecretResolver:
    return SecretResolver(generate_key())


def test_an_encrypted_secret_round_trips(resolver):
    reference = resolver.encrypt(SECRET)
    assert reference.startswith("enc:")
    assert SECRET not in reference
    assert resolver.resolve(reference) == SECRET


def test_an_environment_reference_reads_a_variable_with_the_allowed_prefix(resolver, monkeypatch):
    monkeypatch.setenv("AGENT_SECRET_TEST_SECRET", SECRET)
    assert resolver.resolve("env:AGENT_SECRET_TEST_SECRET") == SECRET


def test_an_environment_reference_reads_a_variable_the_operator_listed(monkeypatch):
    monkeypatch.setenv("PLUGIN_TOKEN", SECRET)
    scope = SecretScope(env_names=frozenset({"PLUGIN_TOKEN"}))
    assert SecretResolver(None, scope).resolve("env:PLUGIN_TOKEN") == SECRET


@pytest.mark.parametrize(
    "name", ["AGENT_SECRET_KEY", "agent_secret_key", "AGENT_DATABASE_URL", "HOME", "PATH", ""]
)
def test_an_environment_reference_outside_the_scope_is_refused_without_its_name(
    resolver, monkeypatch, name
):
    if name:
        monkeypatch.setenv(name, SECRET)
    with pytest.raises(CredentialError, match="env: reference refused") as caught:
        resolver.resolve(f"env:{name}")
    assert SECRET not in str(caught.value)
    assert not name or name not in str(caught.value)


def test_the_agent_settings_stay_unresolvable_even_when_listed(monkeypatch):
    monkeypatch.setenv("AGENT_SECRET_KEY", SECRET)
    scope = SecretScope(env_prefix="", env_names=frozenset({"AGENT_SECRET_KEY"}))
    with pytest.raises(CredentialError, match="env: reference refused"):
        SecretResolver(None, scope).resolve("env:AGENT_SECRET_KEY")


@pytest.fixture
def secrets_dir(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir()
    return folder


@pytest.fixture
def confined(secrets_dir):
    return SecretResolver(None, SecretScope(file_dirs=(str(secrets_dir),), file_max_bytes=64))


def test_a_file_reference_reads_the_file_without_its_trailing_newline(confined, secrets_dir):
    path = secrets_dir / "secret"
    path.write_text(f"{SECRET}\n")
    assert confined.resolve(f"file:{path}") == SECRET


@pytest.mark.parametrize("path", ["/proc/self/environ", "/etc/passwd", "{dir}/../outside", "{dir}"])
def test_a_file_outside_the_secret_directories_is_refused_without_its_path(
    confined, secrets_dir, path
):
    (secrets_dir.parent / "outside").write_text(SECRET)
    path = path.format(dir=secrets_dir)
    with pytest.raises(CredentialError, match="file: reference refused") as caught:
        confined.resolve(f"file:{path}")
    assert path not in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_symlink_out_of_the_secret_directory_is_refused(confined, secrets_dir):
    (secrets_dir.parent / "outside").write_text(SECRET)
    (secrets_dir / "link").symlink_to(secrets_dir.parent / "outside")
    with pytest.raises(CredentialError, match="below AGENT_SECRET_FILE_DIRS"):
        confined.resolve(f"file:{secrets_dir / 'link'}")


def test_a_file_reference_to_something_not_a_regular_file_is_refused(confined, secrets_dir):
    os.mkfifo(secrets_dir / "fifo")
    (secrets_dir / "sub").mkdir()
    for name in ("fifo", "sub"):
        with pytest.raises(CredentialError, match="not a regular file"):
            confined.resolve(f"file:{secrets_dir / name}")


def test_a_secret_file_over_the_size_cap_is_refused(confined, secrets_dir):
    (secrets_dir / "big").write_text("x" * 65)
    (secrets_dir / "fits").write_text("x" * 64)
    with pytest.raises(CredentialError, match="larger than 64 bytes"):
        confined.resolve(f"file:{secrets_dir / 'big'}")
    assert confined.resolve(f"file:{secrets_dir / 'fits'}") == "x" * 64


def test_the_default_scope_reads_no_file_outside_the_usual_secret_directories(resolver, tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET)
    with pytest.raises(CredentialError, match="file: reference refused"):
        resolver.resolve(f"file:{path}")


@pytest.mark.parametrize("value", [SECRET, "", "ENC:abc", None, 42])
def test_a_clear_text_secret_is_refused_without_being_echoed(resolver, value):
    with pytest.raises(CredentialError, match="clear-text") as caught:
        resolver.resolve(value)
    assert SECRET not in str(caught.value)


def test_a_secret_encrypted_with_another_key_is_refused_without_the_secret(resolver):
    foreign = SecretResolver(generate_key()).encrypt(SECRET)
    with pytest.raises(CredentialError, match="does not match AGENT_SECRET_KEY") as caught:
        resolver.resolve(foreign)
    assert SECRET not in str(caught.value)
    assert foreign.removeprefix("enc:") not in str(caught.value)


def test_an_encrypted_secret_without_a_key_is_refused():
    with pytest.raises(CredentialError, match="AGENT_SECRET_KEY is not set"):
        SecretResolver(None).resolve("enc:anything")


def test_a_missing_environment_variable_is_named(resolver, monkeypatch):
    monkeypatch.delenv("AGENT_SECRET_TEST_ABSENT", raising=False)
    with pytest.raises(CredentialError, match="AGENT_SECRET_TEST_ABSENT is not set"):
        resolver.resolve("env:AGENT_SECRET_TEST_ABSENT")


def test_an_unreadable_file_is_named_with_its_reason(confined, secrets_dir):
    with pytest.raises(CredentialError, match="No such file"):
        confined.resolve(f"file:{secrets_dir / 'absent'}")


def test_a_rotated_key_still_decrypts_old_secrets_and_encrypts_with_the_new_one():
    old, new = generate_key(), generate_key()
    before = SecretResolver(old).encrypt(SECRET)
    rotated = SecretResolver(new, previous_keys=[old])
    assert rotated.resolve(before) == SECRET
    after = rotated.rotate(before)
    assert SecretResolver(new).resolve(after) == SECRET
    assert rotated.rotate("env:AGENT_SECRET_X") == "env:AGENT_SECRET_X"


def test_a_key_fingerprint_is_stable_and_reveals_nothing_of_the_key():
    key = generate_key()
    fingerprint = SecretResolver(key).fingerprint()
    assert fingerprint == SecretResolver(key, previous_keys=[generate_key()]).fingerprint()
    assert fingerprint != SecretResolver(generate_key()).fingerprint()
    assert fingerprint not in key
    assert SecretResolver(None).fingerprint() is None


def test_encrypting_without_a_key_is_refused():
    with pytest.raises(CredentialError):
        SecretResolver(None).encrypt(SECRET)
