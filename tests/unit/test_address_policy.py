import ipaddress

import pytest

from agent.core.addresses import AddressPolicy, Family, networks
from agent.core.settings import ConfigError, load_settings

pytestmark = pytest.mark.timeout(10)


def refusal(policy: AddressPolicy, address: str) -> str | None:
    return policy.refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("family", "address", "refused_by"),
    [
        (Family.INSTANCES, "169.254.169.254", "deny 169.254.0.0/16"),
        (Family.INSTANCES, "fe80::1", "deny fe80::/10"),
        (Family.INSTANCES, "0.0.0.0", "deny 0.0.0.0/8"),
        (Family.INSTANCES, "::", "deny ::/128"),
        (Family.INSTANCES, "::ffff:169.254.169.254", "deny 169.254.0.0/16"),
        (Family.PLUGINS, "127.0.0.1", "deny 127.0.0.0/8"),
        (Family.PLUGINS, "::1", "deny ::1/128"),
        (Family.PLUGINS, "::ffff:127.0.0.1", "deny 127.0.0.0/8"),
    ],
)
def test_the_default_policy_refuses_metadata_unspecified_and_for_plugins_loopback(
    family, address, refused_by
):
    assert refused_by in refusal(AddressPolicy.default(family), address)


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.1", "172.16.0.1", "fd00::1", "8.8.8.8"])
def test_the_default_policy_allows_private_and_public_ranges(address):
    for family in Family:
        assert refusal(AddressPolicy.default(family), address) is None


def test_instances_may_reach_loopback_by_default():
    assert refusal(AddressPolicy.default(Family.INSTANCES), "127.0.0.1") is None


def test_the_most_specific_network_decides_and_a_tie_goes_to_allow():
    policy = AddressPolicy(
        Family.PLUGINS,
        allow=networks(["0.0.0.0/0", "127.0.0.1/32", "10.0.0.0/8"]),
        deny=networks(["127.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8"]),
    )
    assert refusal(policy, "127.0.0.1") is None
    assert "deny 127.0.0.0/8" in refusal(policy, "127.0.0.2")
    assert "deny 10.1.0.0/16" in refusal(policy, "10.1.2.3")
    assert refusal(policy, "10.2.0.1") is None


def test_an_address_in_no_allowed_network_is_refused():
    policy = AddressPolicy(Family.INSTANCES, allow=networks(["10.0.0.0/8"]), deny=())
    assert "in no network the instances policy allows" in refusal(policy, "192.168.0.1")
    assert "in no network" in refusal(policy, "fd00::1")


def test_a_cidr_that_does_not_parse_stops_the_agent_naming_the_setting(monkeypatch):
    monkeypatch.setenv("AGENT_PLUGINS_DENY_CIDRS", '["127.0.0.0/8", "not-a-network"]')
    with pytest.raises(ConfigError, match="AGENT_PLUGINS_DENY_CIDRS"):
        load_settings()
