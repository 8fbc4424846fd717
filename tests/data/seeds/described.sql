-- Tables for seeds 000, 001 and 003 as their documents describe them (they give no SQL):
-- what each app would have created before the agent arrives. Seeds 002 and 004 are applied
-- from their own SQL (tests/seeds.py); 002 expects `spaces` to exist already.

CREATE TABLE spaces (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL
);

-- 000: the private package registry, with yapkg's (003) identity columns on packages.
CREATE TABLE packages (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL UNIQUE,
    version VARCHAR(63),
    description TEXT,
    field VARCHAR(63),
    full_name VARCHAR(127) UNIQUE,
    type VARCHAR(63),
    published_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE maintainers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    email VARCHAR(255) NOT NULL UNIQUE,
    role VARCHAR(20) NOT NULL DEFAULT 'contributor'
        CHECK (role IN ('team-lead', 'contributor', 'viewer', 'admin')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE package_maintainers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    package_id UUID NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    maintainer_id UUID NOT NULL REFERENCES maintainers(id) ON DELETE CASCADE,
    scope VARCHAR(20) NOT NULL DEFAULT 'read-only'
        CHECK (scope IN ('full-access', 'read-write', 'read-only')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (package_id, maintainer_id)
);
CREATE TABLE package_versions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    package_id UUID NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    version VARCHAR(63) NOT NULL,
    changelog TEXT,
    published_at TIMESTAMPTZ DEFAULT now(),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (package_id, version)
);
CREATE TABLE access_logs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    package_id UUID NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    maintainer_id UUID REFERENCES maintainers(id) ON DELETE SET NULL,
    action VARCHAR(50) NOT NULL,
    ip_address INET,
    user_agent TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE benchmarks (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    "timestamp" TIMESTAMPTZ NOT NULL,
    package_id UUID REFERENCES packages(id) ON DELETE SET NULL,
    package_name VARCHAR(255) NOT NULL,
    version VARCHAR(63),
    benchmark VARCHAR(255) NOT NULL,
    metric VARCHAR(100) NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    unit VARCHAR(20) NOT NULL,
    run_id VARCHAR(128) NOT NULL,
    branch VARCHAR(255),
    commit_sha VARCHAR(64),
    testbed VARCHAR(255) NOT NULL DEFAULT '',
    parameters JSONB,
    source VARCHAR(50),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, "timestamp"),
    UNIQUE (package_name, benchmark, metric, testbed, run_id, "timestamp")
);
CREATE VIEW latest_benchmarks_view AS
    SELECT DISTINCT ON (package_name, benchmark, metric, testbed) *
    FROM benchmarks
    ORDER BY package_name, benchmark, metric, testbed, "timestamp" DESC;
CREATE VIEW package_maintainers_view AS
    SELECT p.id AS package_id, p.name, p.version, p.published_at,
           m.id AS maintainer_id, m.name AS maintainer_name,
           m.email AS maintainer_email, m.role AS maintainer_role, pm.scope
    FROM packages p
    JOIN package_maintainers pm ON pm.package_id = p.id
    JOIN maintainers m ON m.id = pm.maintainer_id;

-- 001: the MCP gateway (Drizzle, Better-Auth): its own singular "user", session, tenant,
-- mcp servers and tools, API tokens.
CREATE TABLE "user" (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT,
    role TEXT NOT NULL DEFAULT 'user'
);
CREATE TABLE session (
    id TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL,
    token TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ip_address TEXT,
    user_agent TEXT,
    user_id TEXT NOT NULL REFERENCES "user"(id) ON DELETE CASCADE
);
CREATE INDEX session_expires_at_idx ON session (expires_at);
CREATE TABLE verification (
    id TEXT PRIMARY KEY,
    identifier TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now()
);
CREATE TABLE tenant (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'active',
    plan_type TEXT NOT NULL DEFAULT 'free',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE mcp_server (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name TEXT NOT NULL,
    endpoint_url TEXT NOT NULL,
    transport_type TEXT NOT NULL DEFAULT 'http',
    status TEXT NOT NULL DEFAULT 'active',
    tenant_id UUID REFERENCES tenant(id) ON DELETE CASCADE,
    last_health_check TIMESTAMPTZ,
    health_status VARCHAR(50),
    health_details JSONB,
    server_info JSONB,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE mcp_tool (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    server_id UUID NOT NULL REFERENCES mcp_server(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    input_schema JSONB,
    status TEXT NOT NULL DEFAULT 'active',
    last_seen_at TIMESTAMPTZ,
    removed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (server_id, name)
);
CREATE TABLE api_token (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    scopes TEXT[] NOT NULL DEFAULT '{}',
    is_active BOOLEAN NOT NULL DEFAULT true,
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX api_token_expires_at_idx ON api_token (expires_at);
