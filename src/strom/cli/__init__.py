"""The ``strom`` command line: ``strom run`` submits a job, ``strom demo`` runs the bundled one.

``main`` parses arguments and maps outcomes to exit codes; ``run`` loads and runs job code.
"""
