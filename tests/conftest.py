"""Shared fixtures: real services only (see tests/fixtures/)."""

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.clickhouse", "tests.fixtures.pipeline"]
