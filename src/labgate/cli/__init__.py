"""The `labgate` command: argument parsing only; every sub-command calls into a part."""
