"""Provides the Textual lab: a live message list and per-message verdict panes. It only displays."""
