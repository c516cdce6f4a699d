"""Helpers shared by the unit, fuzz and integration tests: waiting on conditions, raw protocol
clients, the real SDKs driven from Python, hostile input, network namespaces, TLS files."""
