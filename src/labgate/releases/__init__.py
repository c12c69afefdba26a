"""Signed release metadata (The Update Framework, through python-tuf's Metadata API and ngclient).

A core: the repository's layout, roles, thresholds and expiries, offline and online signing, the
timestamp's re-signing, and the device-side check of a target against an install's binding. Used
by the command line (offline signing), the control server (serving, online re-signing) and the
agent (verification). No web framework, no event loop.
"""
