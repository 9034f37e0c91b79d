"""Console sinks: print (with optional sampling) and its production variant, logging."""

from strom.connectors.console.sinks import LoggingSink, PrintSink

__all__ = ["LoggingSink", "PrintSink"]
