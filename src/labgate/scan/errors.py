"""What can stop a scan, or one probe of it."""

from __future__ import annotations


class ScanError(Exception):
    """Base of the scanner's errors."""


class TargetError(ScanError, ValueError):
    """A HOST[:PORT] argument or a scan option that cannot be used; the message names it."""


class BudgetSpent(ScanError):
    """The scan's connection budget for this instrument is used up."""


class EndpointSilent(ScanError):
    """The endpoint stopped answering; the scan of this instrument stops."""
