import pytest

from agent.credentials import CredentialError, SecretResolver, generate_key

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


def test_an_environment_reference_reads_the_variable(resolver, monkeypatch):
    monkeypatch.setenv("AGENT_TEST_SECRET", SECRET)
    assert resolver.resolve("env:AGENT_TEST_SECRET") == SECRET


def test_a_file_reference_reads_the_file_without_its_trailing_newline(resolver, tmp_path):
    path = tmp_path / "secret"
    path.write_text(f"{SECRET}\n")
    assert resolver.resolve(f"file:{path}") == SECRET


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
    monkeypatch.delenv("AGENT_TEST_ABSENT", raising=False)
    with pytest.raises(CredentialError, match="AGENT_TEST_ABSENT is not set"):
        resolver.resolve("env:AGENT_TEST_ABSENT")


def test_an_unreadable_file_is_named_with_its_reason(resolver, tmp_path):
    with pytest.raises(CredentialError, match="No such file"):
        resolver.resolve(f"file:{tmp_path / 'absent'}")


def test_encrypting_without_a_key_is_refused():
    with pytest.raises(CredentialError):
        SecretResolver(None).encrypt(SECRET)
