"""Adapters: settings, clients, storage and telemetry, each built in one place from the settings.
They import the core only."""
