"""Provides the lab's modal screens."""
