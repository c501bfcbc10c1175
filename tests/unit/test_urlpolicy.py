"""Callback URL policy (SSRF guard): syntax, address classes, obfuscations, resolution."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ConfigError
from bridge.urlpolicy import (
    MAX_URL_LENGTH,
    UrlPolicy,
    UrlVerdict,
    _inet_aton,
    check_address,
    check_resolved,
    check_url,
)

DEFAULT = UrlPolicy()
NO_PRIVATE = UrlPolicy(allow_private=False)
ALLOW_ALL_V4 = UrlPolicy(allow_cidrs=("0.0.0.0/0",))
ALLOW_ALL = UrlPolicy(allow_cidrs=("0.0.0.0/0", "::/0"))
ALLOW_LINK_LOCAL = UrlPolicy(allow_cidrs=("169.254.0.0/16",))
ALLOW_LOOPBACK_CIDR = UrlPolicy(allow_cidrs=("127.0.0.0/8",))
ALLOW_LOOPBACK = UrlPolicy(allow_loopback=True)

SECRET = "user:secret"

# database=None: no example database written into the shared tree.
FUZZ = settings(max_examples=300, deadline=None, database=None)


def refused(verdict: UrlVerdict, reason: str) -> bool:
    return not verdict.ok and verdict.reason == reason and bool(verdict.message)


def assert_ok(verdict: UrlVerdict) -> None:
    assert verdict.ok, verdict
    assert verdict.reason is None and verdict.message is None


# --- accepted URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/",
        "https://93.184.216.34",
        "http://example.com",
        "https://example.com/",
        "HTTPS://Example.COM/Hook",
        "https://partner.example.com:8443/hooks/events",
        "http://example.com:80/a/b?x=1&y=two",
        "https://example.com/cb?token=abc#frag",
        "https://example.com.:443/",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/",
        "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/cb",
        "http://example.com:1/",
        "http://example.com:65535/",
        "https://bücher.example/hook",
        "https://my_host.example.com/",
        "http://8.8.8.8:8080/x",
    ],
)
def test_accepted(url: str) -> None:
    assert_ok(check_url(url, DEFAULT))
    assert_ok(check_url(url, NO_PRIVATE))


def test_length_limit() -> None:
    prefix = "https://example.com/"
    exact = prefix + "a" * (MAX_URL_LENGTH - len(prefix))
    assert len(exact) == 1024
    assert_ok(check_url(exact, DEFAULT))
    verdict = check_url(exact + "a", DEFAULT)
    assert refused(verdict, "too_long")
    assert verdict.permanent
    assert "1025" in (verdict.message or "")


# --- syntax refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "bad_scheme"),
        ("file:///etc/passwd", "bad_scheme"),
        ("javascript:alert(1)", "bad_scheme"),
        ("gopher://127.0.0.1:6379/_INFO", "bad_scheme"),
        ("ws://example.com/", "bad_scheme"),
        ("//example.com/x", "bad_scheme"),
        ("example.com/x", "bad_scheme"),
        ("", "bad_scheme"),
        ("http:///x", "no_host"),
        ("http://", "no_host"),
        ("https://", "no_host"),
        ("http:/x", "no_host"),
        ("http://:8080/x", "no_host"),
        ("http://?q", "no_host"),
        ("http://user:secret@example.com/", "bad_url"),
        ("http://user@example.com/", "bad_url"),
        ("http://:secret@example.com/", "bad_url"),
        ("http://user:secret@127.0.0.1/", "bad_url"),
        ("http://example.com:0/", "bad_url"),
        ("http://example.com:70000/", "bad_url"),
        ("http://example.com:65536/", "bad_url"),
        ("http://example.com:/", "bad_url"),
        ("http://example.com:8o/", "bad_url"),
        ("http://example.com:-1/", "bad_url"),
        ("http://example.com:+80/", "bad_url"),
        ("http://example.com:８０/", "bad_url"),
        ("http://exa mple.com/", "bad_url"),
        (" http://example.com/", "bad_url"),
        ("http://example.com/ ", "bad_url"),
        ("http://example.com/a b", "bad_url"),
        ("http://example.com/\t", "bad_url"),
        ("http://exam\nple.com/", "bad_url"),
        ("http://example.com/\r\nX-Injected: 1", "bad_url"),
        ("http://example.com\x00.evil/", "bad_url"),
        ("\x01http://example.com/", "bad_url"),
        ("http://example.com/\x7f", "bad_url"),
        ("http://example.com\u200b/", "bad_url"),
        ("http://example.com/\u202e", "bad_url"),
        ("http://example.com\u3000/", "bad_url"),
        ("http:\\\\example.com\\", "bad_url"),
        ("http://evil.com\\@good.com/", "bad_url"),
        ("http://[::1/", "bad_url"),
        ("http://::1/", "no_host"),
        ("http://[127.0.0.1]/", "bad_url"),
        ("http://[fe80::1%25eth0]/", "bad_url"),
        ("http://[::1]x/", "bad_url"),
        ("http://a[b]/", "bad_url"),
        ("http://%6c%6fcalhost/", "bad_url"),
        ("http://exa$mple.com/", "bad_url"),
        ("http://example..com/", "bad_url"),
        ("http://.example.com/", "bad_url"),
        ("http://./", "bad_url"),
        ("http://ｅｘａｍｐｌｅ＠evil/", "bad_url"),
        ("http://1.2.3.256/", "bad_url"),
        ("http://1.2.3.4.5/", "bad_url"),
        ("http://4294967296/", "bad_url"),
        ("http://08.0.0.1/", "bad_url"),
        ("http://0x/", "bad_url"),
        ("http://foo.123/", "bad_url"),
    ],
)
def test_syntax_refused(url: str, reason: str) -> None:
    verdict = check_url(url, ALLOW_ALL)  # refusals here must not depend on the address policy
    assert refused(verdict, reason), verdict
    assert verdict.permanent
    assert SECRET not in (verdict.message or "")
    assert "secret" not in (verdict.message or "")


def test_non_string_is_refused() -> None:
    assert refused(check_url(None, DEFAULT), "bad_url")  # type: ignore[arg-type]
    assert refused(check_url(b"http://example.com", DEFAULT), "bad_url")  # type: ignore[arg-type]


# --- address classes -----------------------------------------------------------------------

ALWAYS_REFUSED = [
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("169.254.170.23", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("fd00:ec2::23", "metadata"),
    ("100.100.100.200", "metadata"),
    ("192.0.0.192", "metadata"),
    ("168.63.129.16", "metadata"),
    ("169.254.0.1", "link_local"),
    ("169.254.255.255", "link_local"),
    ("fe80::1", "link_local"),
    ("febf:ffff::1", "link_local"),
    ("0.0.0.0", "reserved"),
    ("0.1.2.3", "reserved"),
    ("::", "reserved"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff05::1:3", "multicast"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("250.1.2.3", "reserved"),
    # IPv4-mapped IPv6 is judged as the IPv4 address it carries.
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:100.100.100.200", "metadata"),
    ("::ffff:169.254.1.1", "link_local"),
    ("::ffff:0.0.0.0", "reserved"),
    ("::ffff:224.0.0.1", "multicast"),
]

PERMISSIVE_POLICIES = [
    DEFAULT,
    ALLOW_ALL_V4,
    ALLOW_ALL,
    ALLOW_LINK_LOCAL,
    UrlPolicy(allow_private=True, allow_loopback=True, allow_cidrs=("fd00::/8", "100.64.0.0/10")),
    UrlPolicy(allow_cidrs=("169.254.169.254/32", "fd00:ec2::254/128", "224.0.0.0/4", "::/0")),
]


def url_for(address: str) -> str:
    ip = ipaddress.ip_address(address)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"https://{host}:8443/hook"


@pytest.mark.parametrize(("address", "reason"), ALWAYS_REFUSED)
@pytest.mark.parametrize("policy", PERMISSIVE_POLICIES)
def test_always_refused(address: str, reason: str, policy: UrlPolicy) -> None:
    ip = ipaddress.ip_address(address)
    verdict = check_address(ip, policy)
    assert refused(verdict, reason), verdict
    assert verdict.permanent
    assert str(ip) in (verdict.message or "")
    url_verdict = check_url(url_for(address), policy)
    assert refused(url_verdict, reason), url_verdict


def test_metadata_wins_over_cgnat_and_ula() -> None:
    # 100.100.100.200 is inside CGNAT 100.64/10 and fd00:ec2::254 inside ULA: both "private".
    for address in ("100.100.100.200", "fd00:ec2::254"):
        assert refused(check_address(ipaddress.ip_address(address), DEFAULT), "metadata")
    assert_ok(check_address(ipaddress.ip_address("100.100.100.201"), DEFAULT))
    assert_ok(check_address(ipaddress.ip_address("fd00:ec2::255"), DEFAULT))


def test_scoped_ipv6_metadata_is_still_metadata() -> None:
    ip = ipaddress.IPv6Address("fd00:ec2::254%eth0")
    assert refused(check_address(ip, ALLOW_ALL), "metadata")


LOOPBACK = ["127.0.0.1", "127.255.255.254", "127.1.2.3", "::1", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refused(check_address(ip, DEFAULT), "loopback")
    assert refused(check_url(url_for(address), DEFAULT), "loopback")
    assert_ok(check_address(ip, ALLOW_LOOPBACK))
    assert_ok(check_url(url_for(address), ALLOW_LOOPBACK))
    if ipaddress.ip_address(address).version == 4 or address.startswith("::ffff:"):
        assert_ok(check_address(ip, ALLOW_LOOPBACK_CIDR))
        assert_ok(check_url(url_for(address), ALLOW_LOOPBACK_CIDR))
    else:  # an IPv4 CIDR does not open ::1
        assert refused(check_address(ip, ALLOW_LOOPBACK_CIDR), "loopback")
        assert_ok(check_address(ip, UrlPolicy(allow_cidrs=("::1/128",))))


def test_allow_cidr_is_exact() -> None:
    policy = UrlPolicy(allow_cidrs=("127.0.0.1/32",))
    assert_ok(check_url("http://127.0.0.1:9000/", policy))
    assert refused(check_url("http://127.0.0.2:9000/", policy), "loopback")


@pytest.mark.parametrize(
    ("url", "ok_default"),
    [
        ("http://localhost/", False),
        ("http://localhost:8080/cb", False),
        ("http://LOCALHOST/", False),
        ("http://localhost./", False),
        ("http://foo.localhost/", False),
        ("http://a.b.localhost:1234/", False),
        ("http://ｌｏｃａｌｈｏｓｔ/", False),
        ("http://localhost.example.com/", True),
        ("http://notlocalhost/", True),
        ("http://mylocalhost.com/", True),
    ],
)
def test_localhost_names(url: str, ok_default: bool) -> None:
    if ok_default:
        assert_ok(check_url(url, DEFAULT))
        return
    assert refused(check_url(url, DEFAULT), "loopback")
    assert refused(check_url(url, NO_PRIVATE), "loopback")
    assert_ok(check_url(url, ALLOW_LOOPBACK))
    assert_ok(check_url(url, ALLOW_LOOPBACK_CIDR))
    assert_ok(check_url(url, UrlPolicy(allow_cidrs=("::1/128",))))
    assert refused(check_url(url, UrlPolicy(allow_cidrs=("10.0.0.0/8",))), "loopback")


@pytest.mark.parametrize(
    "url", ["http://metadata.google.internal/computeMetadata/v1/", "http://METADATA.goog/"]
)
def test_metadata_names(url: str) -> None:
    assert refused(check_url(url, ALLOW_ALL), "metadata")


PRIVATE = [
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.255.254",
    "100.64.0.1",
    "100.127.255.254",
    "fc00::1",
    "fd12:3456:789a::1",
    "fec0::1",
    "::ffff:10.1.2.3",
]


@pytest.mark.parametrize("address", PRIVATE)
def test_private(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert_ok(check_address(ip, DEFAULT))
    assert_ok(check_url(url_for(address), DEFAULT))
    assert refused(check_address(ip, NO_PRIVATE), "private")
    assert refused(check_url(url_for(address), NO_PRIVATE), "private")
    # allow_cidrs overrides allow_private=False
    opened = UrlPolicy(allow_private=False, allow_cidrs=("10.0.0.0/8", "172.16.0.0/12",
                                                        "192.168.0.0/16", "100.64.0.0/10",
                                                        "fc00::/7", "fec0::/10"))
    assert_ok(check_address(ip, opened))


@pytest.mark.parametrize("address", ["172.15.255.255", "172.32.0.0", "100.63.255.255",
                                     "100.128.0.0", "11.0.0.1", "192.169.0.1", "2001:4860::8888"])
def test_just_outside_private_is_public(address: str) -> None:
    assert_ok(check_address(ipaddress.ip_address(address), NO_PRIVATE))


@pytest.mark.parametrize(
    "address",
    ["192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "192.0.0.8", "2001:db8::1",
     "100::1", "::7f00:1", "3fff::1"],
)
def test_not_routable_special_ranges(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refused(check_address(ip, DEFAULT), "reserved")
    # Unlike the always-refused set, allow_cidrs can open these.
    assert_ok(check_address(ip, ALLOW_ALL))


# --- IPv4 obfuscations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0000.0000.0001", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("0", "0.0.0.0"),
        ("1.2.3.4", "1.2.3.4"),
        ("4294967295", "255.255.255.255"),
    ],
)
def test_inet_aton_forms(host: str, address: str) -> None:
    assert _inet_aton(host) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("2130706433", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("0x7f000001", "loopback"),
        ("127.1", "loopback"),
        ("127.0.0.1.", "loopback"),
        ("１２７.０.０.１", "loopback"),
        ("2852039166", "metadata"),
        ("0251.0376.0251.0376", "metadata"),
        ("0xa9fea9fe", "metadata"),
        ("169.254.43518", "metadata"),
        ("0xa9.0xfe.0xa9.0xfe", "metadata"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:7f00:1]", "loopback"),
        ("[::ffff:169.254.169.254]", "metadata"),
        ("[::ffff:a9fe:a9fe]", "metadata"),
        ("[0:0:0:0:0:ffff:127.0.0.1]", "loopback"),
        ("[0::1]", "loopback"),
        ("0", "reserved"),
        ("0x0", "reserved"),
    ],
)
def test_obfuscated_hosts(host: str, reason: str) -> None:
    for path in ("/", ":8080/cb?x=1"):
        verdict = check_url(f"http://{host}{path}", DEFAULT)
        assert refused(verdict, reason), verdict
    if reason == "loopback":
        assert_ok(check_url(f"http://{host}/", ALLOW_LOOPBACK))
    else:
        assert refused(check_url(f"http://{host}/", ALLOW_ALL), reason)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc inet_aton semantics")
@FUZZ
@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=24))
def test_inet_aton_matches_libc(host: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    assert _inet_aton(host) == expected


@FUZZ
@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from(["dec", "hex", "oct"]))
def test_any_single_number_form_is_that_address(number: int, form: str) -> None:
    text = {"dec": str(number), "hex": hex(number), "oct": "0" + format(number, "o")}[form]
    assert _inet_aton(text) == ipaddress.IPv4Address(number)
    expected = check_address(ipaddress.IPv4Address(number), DEFAULT)
    assert check_url(f"http://{text}/", DEFAULT).reason == expected.reason


# --- credentials never leak ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@example.com/",
        "http://user:secret@127.0.0.1/",
        "ftp://user:secret@example.com/",
        "http://user:secret@[::1/",
        "http://user:secret@example.com:0/",
        "http://user:secret@ex ample.com/",
        "http://user:secret@" + "a" * 1100 + ".com/",
        "http://user:secret@/",
        "http:user:secret@example.com",
        "user:secret@example.com",
    ],
)
def test_messages_never_contain_credentials(url: str) -> None:
    for policy in (DEFAULT, ALLOW_ALL):
        verdict = check_url(url, policy)
        assert not verdict.ok
        assert SECRET not in (verdict.message or "")
        assert "secret" not in (verdict.message or "")


@settings(FUZZ, max_examples=200)
@given(
    st.sampled_from(["http", "https", "HTTP", "ftp"]),
    st.from_regex(r"[A-Za-z0-9._~-]{1,12}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9._~!$&'()*+,;=-]{6,20}", fullmatch=True),
    st.sampled_from(["example.com", "127.0.0.1", "[::1]", "10.0.0.1", "", "ex ample"]),
    st.sampled_from(["", ":80", ":0", ":x", "/path", "/p?q=1"]),
)
def test_password_never_in_message(
    scheme: str, user: str, password: str, host: str, tail: str
) -> None:
    token = "PW" + password + "PW"
    verdict = check_url(f"{scheme}://{user}:{token}@{host}{tail}", ALLOW_ALL)
    assert not verdict.ok
    assert token not in (verdict.message or "")


# --- robustness ----------------------------------------------------------------------------


def assert_verdict_shape(verdict: UrlVerdict) -> None:
    assert isinstance(verdict, UrlVerdict)
    if verdict.ok:
        assert verdict.reason is None and verdict.message is None
    else:
        assert verdict.reason in {
            "too_long", "bad_scheme", "no_host", "bad_url", "metadata", "link_local",
            "reserved", "loopback", "private", "multicast",
        }
        assert verdict.message


@FUZZ
@given(st.text())
def test_never_raises_on_any_text(text: str) -> None:
    assert_verdict_shape(check_url(text, DEFAULT))
    assert_verdict_shape(check_url("http://" + text, DEFAULT))


@FUZZ
@given(st.from_regex(r"[a-zA-Z][a-zA-Z0-9+.-]{0,6}://[^/?#]{0,40}(:[0-9]{0,6})?(/[ -~]{0,30})?",
                     fullmatch=True))
def test_never_raises_on_url_shaped_text(url: str) -> None:
    assert_verdict_shape(check_url(url, DEFAULT))
    assert_verdict_shape(check_url(url, ALLOW_ALL))


@FUZZ
@given(
    st.sampled_from(["http", "https"]),
    st.one_of(
        st.text(max_size=60),
        st.text(alphabet="0123456789abcdefxX.:[]%@", max_size=30),
        st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip)),
        st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True),
    ),
    st.sampled_from(["", ":", ":1", ":65535", ":65536", ":0", "/x", "?q", "#f"]),
)
def test_never_raises_on_arbitrary_hosts(scheme: str, host: str, tail: str) -> None:
    assert_verdict_shape(check_url(f"{scheme}://{host}{tail}", DEFAULT))
    assert_verdict_shape(check_url(f"{scheme}://{host}{tail}", NO_PRIVATE))


@FUZZ
@given(st.ip_addresses())
def test_ip_literal_url_agrees_with_check_address(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    url = url_for(str(ip))
    for policy in (DEFAULT, NO_PRIVATE, ALLOW_LOOPBACK_CIDR):
        assert check_url(url, policy).reason == check_address(ip, policy).reason


# --- check_resolved --------------------------------------------------------------------------


def fake_resolver(answers: list[str]):  # type: ignore[no-untyped-def]
    calls: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return list(answers)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def failing_resolver(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_resolved_public_is_ok_and_host_port_passed() -> None:
    resolve = fake_resolver(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    assert_ok(run(check_resolved("https://Partner.Example.com/hook", DEFAULT, resolver=resolve)))
    assert resolve.calls == [("partner.example.com", 443)]
    resolve = fake_resolver(["93.184.216.34"])
    assert_ok(run(check_resolved("http://example.com:8080/", DEFAULT, resolver=resolve)))
    assert resolve.calls == [("example.com", 8080)]
    resolve = fake_resolver(["93.184.216.34"])
    assert_ok(run(check_resolved("http://example.com/", DEFAULT, resolver=resolve)))
    assert resolve.calls == [("example.com", 80)]


def test_resolved_any_refused_address_refuses() -> None:
    resolve = fake_resolver(["93.184.216.34", "127.0.0.1"])
    verdict = run(check_resolved("https://rebind.example.com/", DEFAULT, resolver=resolve))
    assert refused(verdict, "loopback")
    assert verdict.permanent
    assert "rebind.example.com" in (verdict.message or "")
    assert "127.0.0.1" in (verdict.message or "")


@pytest.mark.parametrize(
    ("answers", "policy", "reason"),
    [
        (["169.254.169.254"], ALLOW_ALL, "metadata"),
        (["8.8.8.8", "fe80::1%eth0"], ALLOW_ALL, "link_local"),
        (["::ffff:127.0.0.1"], DEFAULT, "loopback"),
        (["10.0.0.5"], NO_PRIVATE, "private"),
        (["0.0.0.0"], ALLOW_ALL, "reserved"),
        (["239.1.1.1"], ALLOW_ALL, "multicast"),
        (["127.0.0.1", "::1"], ALLOW_LOOPBACK_CIDR, "loopback"),
    ],
)
def test_resolved_refusals(answers: list[str], policy: UrlPolicy, reason: str) -> None:
    resolve = fake_resolver(answers)
    verdict = run(check_resolved("https://partner.example.com/", policy, resolver=resolve))
    assert refused(verdict, reason), verdict


def test_resolved_private_allowed_by_default() -> None:
    resolve = fake_resolver(["10.0.0.5", "fd12::5"])
    assert_ok(run(check_resolved("https://internal.partner/", DEFAULT, resolver=resolve)))


def test_resolved_localhost_with_allow_cidr() -> None:
    resolve = fake_resolver(["127.0.0.1"])
    assert_ok(run(check_resolved("http://localhost:9000/", ALLOW_LOOPBACK_CIDR, resolver=resolve)))
    assert resolve.calls == [("localhost", 9000)]


@pytest.mark.parametrize("resolver", [failing_resolver, fake_resolver([]), fake_resolver(["nope"])])
def test_unresolvable_is_not_permanent(resolver) -> None:  # type: ignore[no-untyped-def]
    verdict = run(check_resolved("https://gone.example.com/", DEFAULT, resolver=resolver))
    assert refused(verdict, "unresolvable")
    assert verdict.permanent is False
    assert "gone.example.com" in (verdict.message or "")


def test_resolved_checks_url_first_and_skips_dns_for_literals() -> None:
    resolve = fake_resolver(["127.0.0.1"])
    verdict = run(check_resolved("ftp://example.com/", DEFAULT, resolver=resolve))
    assert refused(verdict, "bad_scheme")
    verdict = run(check_resolved("http://user:secret@example.com/", DEFAULT, resolver=resolve))
    assert refused(verdict, "bad_url")
    assert refused(run(check_resolved("http://127.1/", DEFAULT, resolver=resolve)), "loopback")
    assert_ok(run(check_resolved("http://93.184.216.34/", DEFAULT, resolver=resolve)))
    assert resolve.calls == []


def test_default_resolver_on_literal_needs_no_network() -> None:
    # A literal never reaches the resolver, so the default one is safe to exercise here.
    assert_ok(run(check_resolved("http://93.184.216.34/", DEFAULT)))
    assert refused(run(check_resolved("http://[::1]/", DEFAULT)), "loopback")


# --- policy construction -------------------------------------------------------------------


def test_from_settings() -> None:
    policy = UrlPolicy.from_settings(
        types.SimpleNamespace(dest_allow_private=False, dest_allow=["127.0.0.0/8"])
    )
    expected = UrlPolicy(allow_private=False, allow_loopback=False, allow_cidrs=("127.0.0.0/8",))
    assert policy == expected
    assert_ok(check_url("http://127.0.0.1:8000/cb", policy))
    assert refused(check_url("http://10.1.2.3/", policy), "private")
    assert refused(check_url("http://[::1]/", policy), "loopback")
    assert refused(check_url("http://169.254.169.254/", policy), "metadata")


def test_from_real_settings_defaults() -> None:
    from bridge.settings import Settings

    policy = UrlPolicy.from_settings(Settings())
    assert policy == UrlPolicy()


def test_policy_normalises_and_validates_cidrs() -> None:
    from_list = UrlPolicy(allow_cidrs=["10.0.0.0/8"])  # type: ignore[arg-type]
    assert from_list.allow_cidrs == ("10.0.0.0/8",)
    from_str = UrlPolicy(allow_cidrs="127.0.0.0/8")  # type: ignore[arg-type]
    assert from_str.allow_cidrs == ("127.0.0.0/8",)
    assert_ok(check_url("http://127.0.0.9/", UrlPolicy(allow_cidrs=("127.0.0.1/8",))))  # host bits
    hash(UrlPolicy(allow_cidrs=("10.0.0.0/8",)))
    with pytest.raises(ConfigError, match="not-a-cidr"):
        UrlPolicy(allow_cidrs=("not-a-cidr",))


# --- the standard library's ranges are the policy's ------------------------------------------

# The rules that use ipaddress properties, with the ranges their labels promise: if a Python
# release changed one of the properties, the policy would change without a line of ours.
_PROPERTY_RANGES = [
    ("169.254.0.0/16", "link_local"),
    ("fe80::/10", "link_local"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "reserved"),
]


def _edges(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[int]:
    first, last = int(network.network_address), int(network.broadcast_address)
    top = 2**network.max_prefixlen - 1
    return [n for n in (first - 1, first, first + 1, last - 1, last, last + 1) if 0 <= n <= top]


@pytest.mark.parametrize(("cidr", "reason"), _PROPERTY_RANGES)
def test_property_rules_cover_exactly_their_range(cidr: str, reason: str) -> None:
    network = ipaddress.ip_network(cidr)
    make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
    for number in _edges(network):
        ip = make(number)
        if ip in network:
            assert refused(check_address(ip, ALLOW_ALL), reason), ip
        elif reason != "reserved":
            assert check_address(ip, ALLOW_ALL).reason != reason, ip


@FUZZ
@given(st.integers(min_value=0, max_value=2**32 - 1) | st.integers(min_value=0, max_value=2**128 - 1))
def test_loopback_is_127_8_and_colon_colon_1_only(number: int) -> None:
    ip = ipaddress.ip_address(number)
    expected = ip in ipaddress.ip_network("127.0.0.0/8") or ip == ipaddress.IPv6Address("::1")
    assert (check_address(ip, UrlPolicy(allow_private=True)).reason == "loopback") == expected


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "169.254.1.1", "fe80::1", "224.0.0.1", "ff02::1",
                                  "240.0.0.1", "::", "0.1.2.3"])
def test_always_refused_and_loopback_ranges_also_refuse_their_ipv4_mapped_forms(host: str) -> None:
    ip = ipaddress.ip_address(host)
    if ip.version == 4:
        mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
        assert check_address(mapped, DEFAULT).reason == check_address(ip, DEFAULT).reason
    assert not check_address(ip, DEFAULT).ok
