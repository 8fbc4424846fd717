"""The periodic schedule: data only, one entry per job.

`every` names the setting that holds the interval in seconds; each run expires after one
interval, so a backlog built while workers were down is dropped rather than replayed.
"""

SCHEDULE: dict[str, dict[str, str]] = {
    "health-sweep": {"task": "agent.health.sweep", "every": "health_interval_s"},
    "plugins-refresh": {"task": "agent.plugins.refresh", "every": "plugins_interval_s"},
    "discovery-sweep": {"task": "agent.discovery.sweep", "every": "discovery_interval_s"},
    "housekeeping-prune-sessions": {
        "task": "agent.housekeeping.prune_sessions",
        "every": "housekeeping_interval_s",
    },
    "housekeeping-expire-api-keys": {
        "task": "agent.housekeeping.expire_api_keys",
        "every": "housekeeping_interval_s",
    },
    "housekeeping-retention": {
        "task": "agent.housekeeping.apply_retention",
        "every": "retention_interval_s",
    },
}
