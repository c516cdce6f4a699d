"""Tools for testing Skyrelay under adverse conditions (not used by the servers)."""
