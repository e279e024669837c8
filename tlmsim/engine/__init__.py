"""The engine: time base, payload, ports, component, stats and trace, exact reuse, errors.

It knows no LLM and no particular hardware, and imports nothing above it (import
contracts in pyproject.toml, checked by tests/test_architecture.py).
"""
