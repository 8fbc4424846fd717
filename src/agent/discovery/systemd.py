"""systemd services of an SSH host as `systemd_service` services, with their listening sockets.

One fixed command (`DISCOVERY_COMMAND`: nothing from config is ever put into it) runs over
the SSH probe's login, host-key verification and connection cache, and prints three marked
sections:

- `systemctl list-units --type=service --all --output=json`: JSON where systemd supports it
  (v246 and later), the plain table otherwise (older versions ignore `--output` there);
- `systemctl show --property=Id,MainPID "*.service"`: each running unit's main PID;
- `ss -Htlnp`: listening TCP sockets and the processes holding them. A socket whose PID is
  a unit's main PID becomes one of that unit's endpoints. `ss` names processes only to a
  user allowed to see them (root, or the process's own user): others' sockets stay
  unattached.

A host where `systemctl` cannot reach systemd (not booted with it, or no `systemctl` at all)
is reported plainly: the discovery succeeds with no systemd services and says why. Units
whose definition is not found (references only) are left out.

Status: `running` for active units (also activating, reloading, deactivating), `stopped`
for inactive ones, `error` for failed ones; `service_config` keeps load, active and sub
states, the description and the main PID.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Self

from agent.core.results import ErrorClass, ProbeError
from agent.discovery.base import (
    ANY_ADDRESS,
    ERROR,
    RUNNING,
    STOPPED,
    UNKNOWN,
    DiscoveredService,
    Discoverer,
)
from agent.probes import ssh
from agent.probes.base import Target

TYPE = "systemd_service"
MARK = "@@agent-discovery:"
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
_SECTIONS = (
    (
        "units",
        "systemctl list-units --type=service --all --plain --no-legend --no-pager --output=json",
    ),
    ("pids", 'systemctl show --property=Id,MainPID "*.service"'),
    ("sockets", "ss -Htlnp"),
)
_SCRIPT = "LC_ALL=C; export LC_ALL; SYSTEMD_COLORS=0; export SYSTEMD_COLORS; " + " ".join(
    f"echo {MARK}{name}; {command} 2>&1; s=$?; echo {MARK}{name}-exit; echo $s;"
    for name, command in _SECTIONS
)
DISCOVERY_COMMAND = f"sh -c '{_SCRIPT} echo {MARK}end'"
NO_SYSTEMD = (
    "not been booted with systemd",
    "Failed to connect to bus",
    "systemctl: not found",
    "systemctl: command not found",
)
STATUS_OF_ACTIVE = {
    "active": RUNNING,
    "activating": RUNNING,
    "reloading": RUNNING,
    "deactivating": RUNNING,
    "inactive": STOPPED,
    "failed": ERROR,
}
_PID = re.compile(r"pid=(\d+)")


def parse_units(lines: list[str]) -> list[dict[str, str]]:
    """Units from `list-units`: its JSON, or else its plain table (older systemd)."""
    text = "\n".join(lines).strip()
    if text.startswith("["):
        try:
            return [dict(u) for u in json.loads(text) if isinstance(u, dict) and u.get("unit")]
        except ValueError:
            pass
    return [unit for line in lines if (unit := _plain_unit(line))]


def _plain_unit(line: str) -> dict[str, str] | None:
    words = line.lstrip("● *").split(None, 4)
    if len(words) < 4 or not words[0].endswith(".service"):
        return None
    unit, load, active, sub = words[:4]
    description = words[4] if len(words) > 4 else ""
    return {"unit": unit, "load": load, "active": active, "sub": sub, "description": description}


def parse_main_pids(lines: list[str]) -> dict[int, str]:
    """Unit names by main PID, from `systemctl show` blocks (PID 0 means none)."""
    pids: dict[int, str] = {}
    block: dict[str, str] = {}
    for line in [*lines, ""]:
        if not line.strip():
            if block.get("MainPID", "0").isdigit() and int(block.get("MainPID", "0")) > 0:
                pids[int(block["MainPID"])] = block.get("Id", "")
            block = {}
            continue
        name, _, value = line.partition("=")
        block[name.strip()] = value.strip()
    return pids


def parse_listeners(lines: list[str]) -> list[tuple[str, int, tuple[int, ...]]]:
    """(address, port, pids) of each listening TCP socket in `ss -Htlnp` output."""
    found = []
    for line in lines:
        words = line.split()
        if len(words) < 4 or words[0] != "LISTEN":
            continue
        address, _, port = words[3].rpartition(":")
        if not port.isdigit():
            continue
        pids = tuple(int(p) for p in _PID.findall(" ".join(words[5:])))
        found.append((address.strip("[]").split("%")[0], int(port), pids))
    return found


def endpoints_by_unit(
    listeners: Iterable[tuple[str, int, tuple[int, ...]]], main_pids: Mapping[int, str], host: str
) -> dict[str, list[dict[str, Any]]]:
    """Each unit's listening sockets, as endpoints (any-address becomes the instance's host)."""
    endpoints: dict[str, set[tuple[str, int, str]]] = {}
    for address, port, pids in listeners:
        shown = host if address in ANY_ADDRESS else address
        for pid in pids:
            if pid in main_pids:
                endpoints.setdefault(main_pids[pid], set()).add((shown, port, address))
    return {
        unit: [{"host": h, "port": p, "protocol": "tcp", "address": a} for h, p, a in sorted(seen)]
        for unit, seen in endpoints.items()
    }


def service_of(
    unit: Mapping[str, str], endpoints: list[dict[str, Any]], pid: int | None
) -> DiscoveredService:
    """The service of one unit."""
    active = unit.get("active", "")
    config = {
        "load": unit.get("load"),
        "active": active,
        "sub": unit.get("sub"),
        "description": unit.get("description"),
        "main_pid": pid,
    }
    status = ERROR if unit.get("load") in ("error", "bad-setting") else None
    return DiscoveredService(
        unit["unit"], TYPE, status or STATUS_OF_ACTIVE.get(active, UNKNOWN), config, endpoints
    )


def no_systemd(sections: Mapping[str, list[str]]) -> str | None:
    """Why systemd cannot be asked on this host, when that is what the output says."""
    if _exit(sections, "units") == 0:
        return None
    text = "\n".join(sections.get("units", []))
    if any(sign in text for sign in NO_SYSTEMD):
        first = next((line for line in sections.get("units", []) if line.strip()), "")
        return f"no systemd on this host: {first.strip()}"
    return None


def _exit(sections: Mapping[str, list[str]], name: str) -> int | None:
    value = "".join(sections.get(f"{name}-exit", [])).strip()
    return int(value) if value.lstrip("-").isdigit() else None


def services_of(text: str, host: str) -> tuple[list[DiscoveredService], str]:
    """The services and the note of the discovery command's whole output."""
    sections = ssh.split_sections(text, MARK)
    if "end" not in sections:
        raise ProbeError(ErrorClass.PROTOCOL, "discovery output is incomplete or was cut")
    absent = no_systemd(sections)
    if absent:
        return [], absent
    if _exit(sections, "units") != 0:
        detail = " ".join(sections.get("units", []))[:200]
        raise ProbeError(ErrorClass.PROTOCOL, f"systemctl list-units failed: {detail}")
    main_pids = parse_main_pids(sections.get("pids", []))
    endpoints = endpoints_by_unit(parse_listeners(sections.get("sockets", [])), main_pids, host)
    pid_of = {unit: pid for pid, unit in main_pids.items()}
    units = [u for u in parse_units(sections.get("units", [])) if u.get("load") != "not-found"]
    services = [service_of(u, endpoints.get(u["unit"], []), pid_of.get(u["unit"])) for u in units]
    return services, f"{len(services)} systemd services"


class SystemdDiscoverer(Discoverer):
    """Reads systemd's services over the SSH probe's verified, cached login."""

    kind = "ssh"
    types = frozenset({TYPE})

    def __init__(self, probe: ssh.SshProbe, host: str) -> None:
        self._probe = probe
        self._host = host

    @classmethod
    def of(cls, target: Target) -> Self:
        """The discoverer of one `ssh` instance, with the probe's known hosts and pool rules."""
        return cls(ssh.SshProbe.of(target), target.host)

    def discover(self) -> tuple[list[DiscoveredService], str]:
        """Run the fixed discovery command and parse what it printed."""
        output = self._probe.execute(DISCOVERY_COMMAND, MAX_OUTPUT_BYTES)
        if output.truncated:
            raise ProbeError(ErrorClass.PROTOCOL, f"output exceeded {MAX_OUTPUT_BYTES} bytes")
        return services_of(output.text, self._host)

    def secrets(self) -> Iterable[str]:
        """The login's secrets, once resolved."""
        return self._probe.secrets()

    def classify(self, exc: BaseException) -> ErrorClass:
        """Paramiko's failures as the SSH probe classes them."""
        return self._probe.classify(exc)


from_instance = SystemdDiscoverer.from_instance
