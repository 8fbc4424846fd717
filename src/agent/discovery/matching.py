"""Which management plugin manages a discovered service, from `service_registry.capabilities`.

An approved, not deleted plugin declares what it manages under `capabilities.manages`:

```json
{"manages": {
    "docker_images": ["postgres", "postgres:16*", "ghcr.io/acme/*"],
    "systemd_units": ["postgresql@*.service", "nginx.service"],
    "kubernetes_labels": {"app.kubernetes.io/name": "postgresql"},
    "docker_labels": {"com.example.managed-by": "acme"}
}}
```

- `docker_images`: shell-style patterns (`*`, `?`, `[...]`, case-sensitive) matched against
  a container's image, and against every image of a Kubernetes workload's pod template.
  A pattern matches the image as written (`docker.io/library/postgres:16`), without its tag
  or digest (`docker.io/library/postgres`), and by its last path part with and without tag
  (`postgres:16`, `postgres`);
- `systemd_units`: shell-style patterns matched against a systemd unit's full name;
- `kubernetes_labels` / `docker_labels`: every pair must be among the workload's or
  Service's labels (or the container's); the value `*` asks only that the key be there.

A service matches a plugin when any one of these matches. When several plugins match, the
first by slug wins, so the choice is stable. A malformed `manages` is ignored (logged with
the plugin's slug): one bad registry entry never stops discovery.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from agent.discovery.base import DiscoveredService

log = logging.getLogger(__name__)


class Manages(BaseModel):
    """The `capabilities.manages` document of one plugin."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    docker_images: tuple[str, ...] = ()
    systemd_units: tuple[str, ...] = ()
    kubernetes_labels: dict[str, str] = {}
    docker_labels: dict[str, str] = {}


@dataclass(frozen=True)
class PluginRule:
    """One plugin and what it manages."""

    plugin_id: str
    slug: str
    manages: Manages


def rules_from(plugins: Iterable[tuple[Any, str, Mapping[str, Any] | None]]) -> list[PluginRule]:
    """Rules from (id, slug, capabilities) rows, by slug; plugins that declare nothing drop out."""
    rules = []
    for plugin_id, slug, capabilities in plugins:
        raw = (capabilities or {}).get("manages")
        if not raw:
            continue
        try:
            manages = Manages.model_validate(raw)
        except ValidationError:
            log.warning("plugin %s: capabilities.manages is malformed; ignored", slug)
            continue
        rules.append(PluginRule(str(plugin_id), slug, manages))
    return sorted(rules, key=lambda rule: rule.slug)


def image_names(image: str) -> set[str]:
    """The names an image reference answers to: as written, untagged, and its last part."""
    untagged = image.split("@", 1)[0]
    last = untagged.rsplit("/", 1)[-1]
    if ":" in last:
        untagged = untagged[: -len(last)] + last.split(":", 1)[0]
    short = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return {image, untagged, short, short.split(":", 1)[0]}


def _any_pattern(patterns: Sequence[str], names: Iterable[str]) -> bool:
    names = list(names)
    return any(fnmatchcase(name, pattern) for pattern in patterns for name in names)


def _labels_match(wanted: Mapping[str, str], labels: Mapping[str, Any]) -> bool:
    return bool(wanted) and all(
        key in labels and (value == "*" or labels[key] == value) for key, value in wanted.items()
    )


def matches(rule: Manages, service: DiscoveredService) -> bool:
    """Whether a plugin's rule covers `service`."""
    config = service.service_config
    labels = config.get("labels") or {}
    if service.type == "systemd_service":
        return _any_pattern(rule.systemd_units, [service.name])
    if service.type == "docker_container":
        images = image_names(str(config.get("image") or ""))
        return _any_pattern(rule.docker_images, images) or _labels_match(rule.docker_labels, labels)
    images = {name for image in config.get("images") or () for name in image_names(image)}
    return _any_pattern(rule.docker_images, images) or _labels_match(rule.kubernetes_labels, labels)


def plugin_for(service: DiscoveredService, rules: Sequence[PluginRule]) -> str | None:
    """The id of the first plugin (by slug) that manages `service`, if any."""
    return next((rule.plugin_id for rule in rules if matches(rule.manages, service)), None)
