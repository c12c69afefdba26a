"""Property tests: names and SANs are kept exactly as given, or refused by name, never escaped."""

from __future__ import annotations

import ipaddress
import string

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labgate.pki import CertificateAuthority, InvalidName, Profile
from labgate.pki import names as pki_names
from labgate.pki.identity import identity_of

IDENTITY_FIRST = string.ascii_letters + string.digits
IDENTITY_REST = IDENTITY_FIRST + "._@+-"
identity_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(IDENTITY_FIRST),
    st.text(alphabet=IDENTITY_REST, max_size=63),
)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)
dns_names = st.lists(labels, min_size=1, max_size=4).map(".".join).filter(lambda n: len(n) <= 253)
control_characters = st.sampled_from([chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]])
# The CA fixture is reused across examples: every example issues into the same inventory.
# Each example signs (and durably records) a certificate: on a loaded machine one can take longer
# than hypothesis's 200 ms default, which says nothing about the names under test.
REUSE = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@REUSE
@given(name=identity_names)
def test_a_valid_name_appears_exactly_in_the_cn_and_the_identity(
    ca: CertificateAuthority, name: str
) -> None:
    cert = ca.issue(Profile.CLIENT, name).certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
    assert identity_of(cert) == f"labgate:user:{name}"


@given(prefix=st.text(max_size=10), bad=control_characters, suffix=st.text(max_size=10))
def test_a_name_with_a_control_character_is_refused(prefix: str, bad: str, suffix: str) -> None:
    name = prefix + bad + suffix
    with pytest.raises(InvalidName):
        pki_names.identity_name(name)
    with pytest.raises(InvalidName):
        pki_names.display_name(name)
    with pytest.raises(InvalidName):
        pki_names.dns_name(name)
    with pytest.raises(InvalidName):
        pki_names.uri("https://x/" + name)


@given(text=st.text(max_size=80))
def test_any_text_is_either_kept_exactly_or_refused(text: str) -> None:
    try:
        accepted = pki_names.identity_name(text)
    except InvalidName as exc:
        assert str(exc)  # refused with a message
    else:
        assert accepted == text
        assert 1 <= len(text) <= 64


@given(name=st.text(alphabet=IDENTITY_REST, min_size=65, max_size=200))
def test_names_over_64_characters_are_refused_with_the_limit(name: str) -> None:
    with pytest.raises(InvalidName, match="at most 64"):
        pki_names.identity_name("a" + name)


@REUSE
@given(dns=st.lists(dns_names, min_size=1, max_size=3), ips=st.lists(st.ip_addresses(), max_size=3))
def test_server_sans_round_trip_exactly(
    ca: CertificateAuthority,
    dns: list[str],
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    ips = [a for a in ips if not (a.is_unspecified or a.is_multicast)]
    cert = ca.issue(Profile.SERVER, "host", dns=dns, ips=ips).certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(dict.fromkeys(dns))
    assert san.get_values_for_type(x509.IPAddress) == list(dict.fromkeys(ips))


@given(dns=dns_names, ip=st.ip_addresses())
def test_a_client_never_gets_a_dns_or_ip_san(
    dns: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> None:
    from labgate.pki.decisions import Denied
    from labgate.pki.profiles import build_request, judge

    if ip.is_unspecified or ip.is_multicast:
        return
    for request in (
        build_request(Profile.CLIENT, "alice", dns=[dns]),
        build_request(Profile.CLIENT, "alice", ips=[ip]),
    ):
        decision = judge(request)
        assert isinstance(decision, Denied)
        assert "server SAN" in decision.reason


@given(kind=st.sampled_from(["user", "device", "gateway"]), name=identity_names)
def test_no_profile_may_claim_a_labgate_identity_but_its_own(kind: str, name: str) -> None:
    from labgate.pki.decisions import Allowed, Denied
    from labgate.pki.profiles import build_request, judge

    claimed = f"labgate:{kind}:{name}"
    for profile in Profile:
        request = build_request(
            profile,
            "holder",
            dns=["h.example"] if profile is not Profile.CLIENT else [],
            uris=[claimed],
        )
        own = profile.identity_uri("holder")
        expected = Allowed if claimed == own else Denied
        assert isinstance(judge(request), expected)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "-rf",
        ".hidden",
        "alice bob",
        "alice/../root",
        "caf\u00e9",
        "a\u200bb",  # zero-width space
        "x" * 65,
        "alice\nCN=admin",
        "alice,O=evil",
    ],
)
def test_bad_names_are_refused(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(InvalidName):
        ca.issue(Profile.CLIENT, bad)


@pytest.mark.parametrize(
    "bad",
    [
        "-bad.example",
        "bad-.example",
        "a..b",
        "exa mple.com",
        "\u00fcber.example",
        "a" * 64 + ".com",
        "*.example.com",
    ],
)
def test_bad_dns_names_are_refused(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(InvalidName):
        ca.issue(Profile.DEVICE, "dev", dns=[bad])


def test_wildcards_only_on_server_certificates(ca: CertificateAuthority) -> None:
    cert = ca.issue(Profile.SERVER, "web", dns=["*.lab.example"]).certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["*.lab.example"]
    with pytest.raises(InvalidName, match="wildcard"):
        ca.issue(Profile.GATEWAY, "gw", dns=["*.lab.example"])
    with pytest.raises(InvalidName, match="at least two labels"):
        ca.issue(Profile.SERVER, "web", dns=["*.example"])


@pytest.mark.parametrize(
    "bad", ["not a uri", "no-scheme", "https://x/\u00e9", "urn:a b", "http://x/<script>"]
)
def test_bad_uris_are_refused(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(InvalidName, match="URI"):
        ca.issue(Profile.CLIENT, "alice", uris=[bad])


@pytest.mark.parametrize("bad", ["0.0.0.0", "::", "224.0.0.1", "300.1.1.1", "localhost"])
def test_bad_ip_addresses_are_refused(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(InvalidName):
        ca.issue(Profile.SERVER, "web", ips=[bad])


def test_ca_names_may_be_human_but_not_control(tmp_path: object, passphrase: bytes) -> None:
    assert pki_names.display_name("Laboratoire Émile Roux") == "Laboratoire Émile Roux"
    for bad in (" Lab", "Lab ", "Lab\u2028CA", "Lab\x00CA", ""):
        with pytest.raises(InvalidName):
            pki_names.display_name(bad)
