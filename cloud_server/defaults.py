"""Defaults shared by the server's options, its command line and its metrics endpoint."""

DEFAULT_METRICS_PORT = 9415         # not 9100: node_exporter's
DEFAULT_METRICS_HOST = "127.0.0.1"  # loopback: docs/operations.md says how to expose it
