"""Stream operators: the units a task chains together (map, filter, keyed reduce, sinks, ...)."""
