"""Days left of the certificates a process serves: read from the files at each scrape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from labgate.pki import CertificateAuthority, Profile
from labgate.pki.expiry import DaysLeftCollector, expiring, held


def test_a_replaced_file_shows_at_the_next_scrape_and_an_unreadable_one_shows_nothing(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    first = ca.issue(Profile.SERVER, "host", dns=["host.lab.example"], days=40)
    ca.handed_out(first)
    first.write(tmp_path / "host")
    registry = CollectorRegistry()
    sources = [("server", tmp_path / "host.crt"), ("spare", tmp_path / "missing.crt")]
    registry.register(DaysLeftCollector(lambda: sources))

    def scrape() -> dict[str, float]:
        return {
            s.labels["serial"]: s.value
            for f in text_string_to_metric_families(generate_latest(registry).decode())
            for s in f.samples
            if s.name == "labgate_certificate_days_left" and s.labels["role"] == "server"
        }

    assert 39.9 < scrape()[format(first.serial, "x")] <= 40
    renewed = ca.renew(first.certificate_pem, days=90)
    ca.handed_out(renewed)
    renewed.write(tmp_path / "host")
    days = scrape()
    assert format(first.serial, "x") not in days
    assert 89.9 < days[format(renewed.serial, "x")] <= 90


def test_warnings_start_30_days_before_expiry_and_say_expired_after(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = ca.issue(Profile.SERVER, "host", dns=["host.lab.example"], days=40)
    ca.handed_out(issued)
    issued.write(tmp_path / "host")
    found = [h for h in held([("server", tmp_path / "host.crt")]) if h.serial == issued.serial]
    end = issued.certificate.not_valid_after_utc
    assert expiring(found, now=end - timedelta(days=31)) == []
    (soon,) = expiring(found, now=end - timedelta(days=29))
    assert "in 29.0 days: renew it" in soon and "CN=host" in soon
    (gone,) = expiring(found, now=end + timedelta(hours=1))
    assert "expired" in gone
    assert datetime.now(UTC) < end
