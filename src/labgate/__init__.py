"""labgate: real security in front of lab instruments and field devices that have none."""

__version__ = "0.1.0"
