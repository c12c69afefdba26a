"""Which key-exchange groups a TLS context accepts, on Pythons whose `ssl` cannot say.

Python's `ssl` gained `SSLContext.set_groups` only after 3.13; before it, the one knob is
`set_ecdh_curve`, which sets a single group. OpenSSL 3's default list accepts X448, secp521r1 and
five finite-field groups besides the three a profile like Mozilla's names, and an outside scan
counts every one of them against us.

So, where `set_groups` is missing, this calls OpenSSL's own `SSL_CTX_set1_groups_list` on the
context, through ctypes, in the very libssl that the `_ssl` module is linked with (found through
the module's own shared object, so never a second copy of OpenSSL). The `SSL_CTX *` is the first
field after the object header of CPython's `PySSLContext`, as it has been in every CPython 3; it is
checked before use by reading the context's options through it and comparing them with what
Python reports. OpenSSL's answer is checked too, so a typo in a group name is an error, not a
silently wider list. Where any of this is not possible (another Python, a statically linked
OpenSSL), the context falls back on the one group every client has, prime256v1, and says so:
narrower than asked, never wider.

Neither alternative fits: an OpenSSL configuration file (`OPENSSL_CONF`) is read once per process
and would change every context in it, the instrument-facing ones included; pyOpenSSL's contexts are
not `ssl.SSLContext`s, which asyncio, uvloop and uvicorn need.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import ssl
import sys
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("labgate.pki.tls")

# From OpenSSL's ssl.h: SSL_CTX_set1_groups_list(ctx, s) is SSL_CTX_ctrl(ctx, 92, 0, s).
_SSL_CTRL_SET_GROUPS_LIST = 92
# The group every TLS client offers, used when the list cannot be set.
FALLBACK_GROUP = "prime256v1"


class GroupsError(ValueError):
    """OpenSSL refused a list of groups (a name it does not know, or an empty list)."""


def set_groups(context: ssl.SSLContext, groups: Sequence[str]) -> None:
    """Accept only `groups` (OpenSSL names, most preferred first) for key exchange."""
    if not groups:
        raise GroupsError("no key-exchange groups given: at least one is needed")
    text = ":".join(groups)
    native = getattr(context, "set_groups", None)
    if native is not None:  # Python's own, where it exists
        try:
            native(text)
        except ssl.SSLError as exc:
            raise GroupsError(f"OpenSSL refused the groups {text!r}: {exc}") from exc
        return
    libssl = _libssl()
    pointer = _ssl_ctx(context, libssl) if libssl is not None else None
    if libssl is None or pointer is None:
        log.warning(
            "cannot set the TLS groups %s on this Python; accepting %s only", text, FALLBACK_GROUP
        )
        context.set_ecdh_curve(FALLBACK_GROUP)
        return
    if libssl.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, text.encode("ascii")) != 1:
        raise GroupsError(f"OpenSSL refused the groups {text!r}")


@functools.cache
def _libssl() -> Any:
    """The libssl `_ssl` uses, with the two functions typed; None if it cannot be reached."""
    if sys.implementation.name != "cpython":
        return None
    try:
        library = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
        ctrl = library.SSL_CTX_ctrl
        get_options = library.SSL_CTX_get_options
    except (AttributeError, OSError):
        return None
    ctrl.restype = ctypes.c_long
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    get_options.restype = ctypes.c_uint64
    get_options.argtypes = [ctypes.c_void_p]
    return library


def _ssl_ctx(context: ssl.SSLContext, libssl: Any) -> int | None:
    """The context's `SSL_CTX *`, if reading its options through it gives Python's answer."""
    if not isinstance(context, ssl.SSLContext) or ssl.SSLContext.__basicsize__ <= (
        object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p) - 1
    ):
        return None
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        return None
    if int(libssl.SSL_CTX_get_options(pointer)) != int(context.options):
        return None
    return int(pointer)
