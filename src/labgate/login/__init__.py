"""A person's login at the control server from a terminal: the tokens kept 0600 in the user's
configuration directory and refreshed on use, and a client certificate for qslib made from a
key that never leaves this machine."""
