"""Helpers the tests and fixtures share: plain functions and classes, no fixtures.

Fixtures live in tests/fixtures/ (and conftest.py); a test imports helpers from here,
never from another test module.
"""
