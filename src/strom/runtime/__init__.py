"""The embedded runtime: tasks (one thread per subtask chain), channels, partitioners, state,
operators and the local executor. ``strom.graph`` builds the ``JobGraph`` this package runs."""
