"""Applications built on strom's public API (seed §4); ``strom.apps.accesslog`` is the first.

Apps sit above ``strom.api`` and below ``strom.cli``: they build jobs, the CLI runs them.
"""
