"""Typed models of the shared schema; importing this package registers every table."""

from models.base import Base

__all__ = ["Base"]
