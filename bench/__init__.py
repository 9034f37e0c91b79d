"""strom's benchmark suite: run ``python -m bench --help``. Not part of the test suite."""
