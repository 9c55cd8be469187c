"""Code the tests share, and the benchmarks that drive the same engines: processes started with
their output in a file and stopped by pid, private network namespaces, real servers and engines."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
