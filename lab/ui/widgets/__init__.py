"""Provides the lab's widgets, one per module."""
