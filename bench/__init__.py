"""The benchmarks. Each file here runs as a script (`python3 bench/run.py`) and imports its
siblings by their bare names; the tests import the shared process helpers as `bench.daemons`."""
