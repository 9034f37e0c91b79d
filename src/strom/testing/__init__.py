"""Helpers for testing strom jobs and connectors; see the submodules (e.g. ``network``)."""
