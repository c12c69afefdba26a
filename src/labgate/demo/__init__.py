"""The demo: every part of labgate started on free loopback ports, wired together, for a person."""
