"""The control server's CA: what a request signed but never committed is not left valid."""

from __future__ import annotations

from typing import Any

from labgate.control.layout import ca_dir
from labgate.control.runtime import Runtime
from labgate.control.settings import ControlSettings
from labgate.pki import Profile, SqliteInventory


def test_a_certificate_signed_for_a_request_that_never_committed_ends_failed(
    settings: ControlSettings, make_csr: Any
) -> None:
    runtime = Runtime.open(settings)
    _, kept_csr = make_csr("kept")
    _, lost_csr = make_csr("lost")
    kept = runtime.ca.sign_csr(kept_csr.encode(), Profile.CLIENT)
    runtime.ca.handed_out(kept)  # its transaction committed
    lost = runtime.ca.sign_csr(lost_csr.encode(), Profile.CLIENT)  # its transaction rolled back
    runtime.close()
    inventory = SqliteInventory.open(ca_dir(settings.data_dir) / "inventory.sqlite3")
    try:
        assert (entry := inventory.get(kept.serial)) is not None and entry.state == "issued"
        assert (entry := inventory.get(lost.serial)) is not None and entry.state == "failed"
        assert any(
            r.serial == lost.serial
            for r in inventory.revocations(unexpired_at=kept.certificate.not_valid_before_utc)
        )
    finally:
        inventory.close()
