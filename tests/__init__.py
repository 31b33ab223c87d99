"""The test suite (a package, so that ``tests.*`` helpers import from the repository root)."""
