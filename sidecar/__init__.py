"""Observability sidecar: dependency probes, health endpoints, metrics and correlation next to any app."""

__version__ = "0.1.0"
