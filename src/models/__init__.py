"""Typed models of the shared schema; importing this package registers every table."""

from models.agent import AgentKnownHost, AgentLease, AgentSchemaObject
from models.auth import (
    ApiKey,
    AuditLog,
    AuthSession,
    Role,
    User,
    UserRole,
    UserSession,
    Verification,
)
from models.base import Base
from models.benchmarks import BenchmarkAlert, BenchmarkIngest, BenchmarkQuarantine
from models.infrastructure import (
    InfrastructureInstance,
    InstanceHealthHistory,
    InstanceService,
    ServiceManagementAssignment,
)
from models.marketplace import ServiceInstallation, ServiceRegistry, Space
from models.mcp import ApiToken, McpServer, McpTool, Tenant
from models.plugins import AgentInstallationHealth, PluginHealthHistory
from models.registry import (
    AccessLog,
    Benchmark,
    Maintainer,
    Package,
    PackageMaintainer,
    PackageVersion,
)

__all__ = [
    "AccessLog",
    "AgentInstallationHealth",
    "AgentKnownHost",
    "AgentLease",
    "AgentSchemaObject",
    "ApiKey",
    "ApiToken",
    "AuditLog",
    "AuthSession",
    "Base",
    "Benchmark",
    "BenchmarkAlert",
    "BenchmarkIngest",
    "BenchmarkQuarantine",
    "InfrastructureInstance",
    "InstanceHealthHistory",
    "InstanceService",
    "Maintainer",
    "McpServer",
    "McpTool",
    "Package",
    "PackageMaintainer",
    "PackageVersion",
    "PluginHealthHistory",
    "Role",
    "ServiceInstallation",
    "ServiceManagementAssignment",
    "ServiceRegistry",
    "Space",
    "Tenant",
    "User",
    "UserRole",
    "UserSession",
    "Verification",
]
