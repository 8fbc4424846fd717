"""Alembic environment: the agent's models are the target; other services' tables are left alone.

Tables the agent adopted (`agent_schema_objects`) belong to the apps that created them: they
are checked by `models.adoption` for what the agent needs, not compared with the models.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

import models
from agent.core.settings import get_settings
from models import ownership

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = models.Base.metadata
adopted: set[str] = set()


def include_name(name, type_, parent_names):
    """Compare only the tables this schema declares: not partitions, not other services' tables."""
    if type_ == "table":
        return name in target_metadata.tables
    return True


def include_object(object_, name, type_, reflected, compare_to):
    """Leave the tables the agent adopted, and everything on them, to their owners."""
    table = name if type_ == "table" else getattr(getattr(object_, "table", None), "name", None)
    return table not in adopted


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = create_engine(database_url(), poolclass=pool.NullPool)
    with connectable.connect() if hasattr(connectable, "connect") else connectable as connection:
        outside = not connection.in_transaction()
        adopted.clear()
        adopted.update(t for t, how in ownership.recorded(connection).items() if how == "adopted")
        if outside and connection.in_transaction():
            connection.commit()  # the read's own transaction; the migration begins its own
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_name=include_name,
            include_object=include_object,
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
