"""The periodic schedule: data only, one entry per job.

`every` names the setting that holds the interval in seconds; each run expires after one
interval, so a backlog built while workers were down is dropped rather than replayed.
"""

SCHEDULE: dict[str, dict[str, str]] = {
    "health-sweep": {"task": "agent.health.sweep", "every": "health_interval_s"},
}
