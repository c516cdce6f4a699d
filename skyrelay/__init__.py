"""Skyrelay: the CLI, config and what every process shares."""

# Reported by every node (connect replies, the server API's ``info``).
VERSION = "0.1.0"
