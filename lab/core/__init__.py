"""The sans-IO analysis core: plain functions from (message, facts, DNS view) to typed results.

Nothing in this package opens a socket, a file, a database or an event loop; an import-linter
contract in pyproject.toml keeps it that way.
"""
