"""Each request owns one transaction: it commits when the route returns, before the response
leaves, and rolls back when the route raises.

Domain functions never commit. What must happen outside the database once the commit holds
(copying a revocation into the CA's own inventory file) is registered with `after_commit` and
runs only if the commit succeeded; it must be safe to skip (the database stays the record).

Some refusals are themselves records: a failed login counts against its account, a reused refresh
token revokes its family. Such code rolls back what it had begun, writes the record, calls
`keep_on_error` and raises: the transaction then commits the record before the error goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

AFTER_COMMIT = "labgate.after_commit"
KEEP_ON_ERROR = "labgate.keep_on_error"
log = logging.getLogger("labgate.control")


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run `action` once the current transaction of `session` has committed."""
    session.info.setdefault(AFTER_COMMIT, []).append(action)


def keep_on_error(session: Session) -> None:
    """Commit what the session holds even though the request is about to fail."""
    session.info[KEEP_ON_ERROR] = True


@contextmanager
def unit_of_work(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits as one transaction when the block ends without error."""
    with sessions() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            if session.info.pop(KEEP_ON_ERROR, False):
                session.commit()
            else:
                session.rollback()
            session.info.pop(AFTER_COMMIT, None)
            raise
        for action in session.info.pop(AFTER_COMMIT, []):
            try:
                action()
            except Exception as error:  # the commit stands; say what was left undone
                log.warning("after commit: %s: %s", type(error).__name__, error)
