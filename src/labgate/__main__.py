"""`python -m labgate` runs the command line."""

from labgate.cli.app import main

main()
