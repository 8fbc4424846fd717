import subprocess

import pytest

from agent.core.results import Status
from agent.probes.ssh import (
    FACTS_COMMAND,
    MARK,
    CommandOutput,
    observe,
    parse_df,
    parse_facts,
    parse_meminfo,
)

pytestmark = pytest.mark.timeout(10)

DEBIAN = f"""{MARK}os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
{MARK}uname
Linux 6.1.0-18-amd64
{MARK}uptime
351234.56 1388011.22
{MARK}nproc
8
{MARK}loadavg
0.52 0.41 0.30 2/612 123456
{MARK}meminfo
MemTotal:       16318480 kB
MemFree:         1022236 kB
MemAvailable:    9876544 kB
Buffers:          508252 kB
{MARK}df
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/nvme0n1p2   490617784 20717412 444903092       5% /
{MARK}end
"""

FREEBSD = f"""{MARK}os-release
{MARK}uname
FreeBSD 14.0-RELEASE
{MARK}uptime
{MARK}nproc
4
{MARK}loadavg
{MARK}meminfo
{MARK}df
Filesystem  1024-blocks    Used    Avail Capacity  Mounted on
zroot/ROOT/default 94371840 5242880 89128960     6%    /
{MARK}end
"""


def test_a_debian_host_yields_every_fact():
    assert parse_facts(DEBIAN) == {
        "os_name": "Debian GNU/Linux",
        "os_version": "12",
        "os_type": "linux",
        "kernel": "6.1.0-18-amd64",
        "uptime_s": 351234.56,
        "cpu_count": 8,
        "load_1": 0.52,
        "load_5": 0.41,
        "load_15": 0.30,
        "memory_total_bytes": 16318480 * 1024,
        "memory_available_bytes": 9876544 * 1024,
        "disk_total_bytes": 490617784 * 1024,
        "disk_free_bytes": 444903092 * 1024,
    }


def test_a_host_without_proc_or_os_release_yields_what_it_has():
    assert parse_facts(FREEBSD) == {
        "os_type": "freebsd",
        "kernel": "14.0-RELEASE",
        "cpu_count": 4,
        "disk_total_bytes": 94371840 * 1024,
        "disk_free_bytes": 89128960 * 1024,
    }


def test_an_old_kernel_without_memavailable_reports_free_memory():
    facts = parse_meminfo(["MemTotal: 1000 kB", "MemFree: 250 kB"])
    assert facts == {"memory_total_bytes": 1024000, "memory_available_bytes": 256000}


def test_a_device_name_with_spaces_does_not_confuse_df():
    lines = ["Filesystem 1024-blocks Used Available Capacity Mounted on",
             "my disk 100 40 60 40% /"]  # fmt: skip
    assert parse_df(lines) == {"disk_total_bytes": 102400, "disk_free_bytes": 61440}


def test_garbage_yields_no_facts_and_no_error():
    assert parse_facts("Welcome!\n\x00\xff not a shell\n" + MARK + "nproc\nmany\n") == {}


def test_complete_output_is_ok():
    seen = observe(CommandOutput(DEBIAN, truncated=False))
    assert seen.status is Status.OK
    assert seen.checks == {"ssh.can_connect": Status.OK, "ssh.facts": Status.OK}


def test_cut_output_is_a_warning_that_keeps_the_facts_it_read():
    seen = observe(CommandOutput(DEBIAN[:400], truncated=True))
    assert seen.status is Status.WARNING
    assert seen.checks["ssh.facts"] is Status.WARNING
    assert seen.facts["os_type"] == "linux"
    assert "cut" in seen.message


def test_output_without_the_end_marker_is_a_warning():
    seen = observe(CommandOutput("This account is restricted.\n", truncated=False))
    assert seen.status is Status.WARNING
    assert "incomplete" in seen.message


def test_the_facts_command_runs_in_a_plain_posix_shell_and_parses():
    output = subprocess.run(
        ["/bin/sh", "-c", FACTS_COMMAND], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    facts = parse_facts(output)
    assert output.rstrip().endswith(f"{MARK}end")
    assert {
        "os_type",
        "kernel",
        "cpu_count",
        "memory_total_bytes",
        "disk_total_bytes",
    } <= facts.keys()
