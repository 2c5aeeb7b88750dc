"""Dependency collectors, one module per kind, looked up by kind name through an explicit registry."""

from collectors.registry import KNOWN_KINDS, CollectorUnavailable, load_collector

__all__ = ["KNOWN_KINDS", "CollectorUnavailable", "load_collector"]
