"""Callback URL policy: which partner-supplied URLs the bridge may POST events to (SSRF guard).

Partners register callback URLs and the bridge then sends HTTP requests to them from inside our
network, so a careless or hostile URL could make the bridge reach internal services. The policy:

* **Syntax** (:func:`check_url`, no DNS): at most :data:`MAX_URL_LENGTH` characters; scheme
  ``http`` or ``https``; a host is required; no whitespace, control or other invisible
  characters, and no backslash (parsers disagree on it); no ``user:password@`` (credentials
  would be stored and logged); a port, if given, in ``1..65535``. Host names are checked in the
  ASCII form an HTTP client would use (IDNA), so ``１２７.０.０.１`` is ``127.0.0.1``.
* **IP literals** are classified by :func:`check_address`. IPv4 is read the way
  ``inet_aton``/``getaddrinfo`` read it, because HTTP clients hand the host to them:
  ``2130706433``, ``0177.0.0.1``, ``0x7f000001`` and ``127.1`` are all ``127.0.0.1``.
  IPv4-mapped IPv6 (``::ffff:127.0.0.1``) is judged as the IPv4 address it carries.
* **Address classes**, in this order:

  1. Always refused, whatever ``allow_cidrs`` says: cloud metadata endpoints (``metadata``),
     link-local ``169.254.0.0/16`` and ``fe80::/10`` (``link_local``), multicast
     (``multicast``), unspecified ``0.0.0.0/8`` and ``::``, ``240.0.0.0/4`` including the
     broadcast address (``reserved``).
  2. Inside any ``allow_cidrs`` network: accepted.
  3. Loopback ``127.0.0.0/8``, ``::1``: accepted only with ``allow_loopback`` (``loopback``).
  4. Private ``10/8``, ``172.16/12``, ``192.168/16``, CGNAT ``100.64/10``, ULA ``fc00::/7``
     and deprecated site-local ``fec0::/10``: accepted only with ``allow_private``
     (``private``).
  5. Other special-purpose ranges that are not globally routable (documentation, benchmarking,
     IETF protocol assignments, discard): refused (``reserved``).
  6. Everything else (globally routable): accepted.

* **Names**: ``localhost`` and ``*.localhost`` are loopback; well-known metadata host names
  (``metadata.google.internal`` …) are ``metadata``; a name whose last label is numeric but is
  not a valid IPv4 address (``1.2.3.999``) is refused as ``bad_url`` since URL parsers disagree
  about it. Any other name passes :func:`check_url`; :func:`check_resolved` resolves it at send
  time and refuses it if *any* address is refused (DNS rebinding, split answers).

A refusal is ``permanent`` (retrying the same URL cannot help) except ``unresolvable``, which a
caller retries later. Messages name the URL part and the rule and never echo credentials.

:func:`check_resolved` checks the addresses as resolved at that moment; a sender that wants to
close the rebinding window completely must connect to the checked address itself.

Pure logic plus an injectable resolver; stdlib only. Over 400 lines on purpose: the syntax
check, the address classes and the resolved check are one ordered rule set (above), read and
tested as one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bridge.errors import ConfigError

__all__ = [
    "MAX_URL_LENGTH",
    "UrlPolicy",
    "UrlVerdict",
    "check_address",
    "check_resolved",
    "check_url",
]

#: Longest callback URL accepted, in characters.
MAX_URL_LENGTH = 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Characters of an ASCII host name after IDNA conversion. Underscore is not valid in host names
# but occurs in real DNS records; everything else (``%``, ``@``, ``!``…) is refused because HTTP
# clients treat such hosts differently (percent-decoding, userinfo splitting).
_HOST_CHARS = re.compile(r"[a-z0-9_.-]+")
_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9a-fA-F]+")

# How much of a parsed URL part a message may quote: enough to recognise it, never a wall of text.
_QUOTE_LIMIT = 80


def _net(cidr: str) -> IPNetwork:
    return ipaddress.ip_network(cidr)


class _Range(NamedTuple):
    contains: Callable[[IPAddress], bool]
    reason: str
    label: str


def _within(cidr: str) -> Callable[[IPAddress], bool]:
    network = _net(cidr)
    return lambda ip: ip in network


def _is(prop: str, version: int) -> Callable[[IPAddress], bool]:
    """The ``ipaddress`` property ``prop``, for one address family: used where the standard
    library's range is exactly the rule's (loopback, link-local, multicast, IPv4 240/4, ``::``);
    not for ``is_private`` or ``is_global``, whose ranges differ from this policy's and changed
    between Python patch releases."""
    family = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    test = getattr(family, prop).fget
    return lambda ip: type(ip) is family and bool(test(ip))


# Cloud instance metadata services hand out credentials; they are the classic SSRF target.
# Listed before link-local because 100.100.100.200 (Alibaba) sits inside CGNAT and
# fd00:ec2::254 / fd00:ec2::23 (AWS IMDS / EKS Pod Identity) inside ULA, both allowed by default.
# Matched as networks rather than by equality so that an IPv6 scope id ("%eth0") cannot slip by.
_METADATA: tuple[_Range, ...] = tuple(
    _Range(_within(address), "metadata", label)
    for address, label in (
        ("169.254.169.254/32", "cloud metadata endpoint (AWS, GCP, Azure, OpenStack …)"),
        ("169.254.170.2/32", "cloud metadata endpoint (AWS ECS task credentials)"),
        ("169.254.170.23/32", "cloud metadata endpoint (AWS EKS Pod Identity)"),
        ("fd00:ec2::254/128", "cloud metadata endpoint (AWS IMDS over IPv6)"),
        ("fd00:ec2::23/128", "cloud metadata endpoint (AWS EKS Pod Identity over IPv6)"),
        ("100.100.100.200/32", "cloud metadata endpoint (Alibaba Cloud)"),
        ("192.0.0.192/32", "cloud metadata endpoint (Oracle Cloud)"),
        ("168.63.129.16/32", "cloud platform endpoint (Azure WireServer)"),
    )
)

# Never a legitimate partner endpoint, and allow_cidrs must not be able to open them: an
# operator allowing "0.0.0.0/0" or "169.254.0.0/16" for convenience must not expose metadata.
_ALWAYS_REFUSED: tuple[_Range, ...] = _METADATA + (
    _Range(_is("is_link_local", 4), "link_local", "IPv4 link-local 169.254.0.0/16"),
    _Range(_is("is_link_local", 6), "link_local", "IPv6 link-local fe80::/10"),
    # Not is_unspecified: for IPv4 that is 0.0.0.0 alone, and all of 0/8 means "this host" to
    # some stacks.
    _Range(_within("0.0.0.0/8"), "reserved", "unspecified / 'this network' 0.0.0.0/8"),
    _Range(_is("is_unspecified", 6), "reserved", "IPv6 unspecified address ::"),
    _Range(_is("is_multicast", 4), "multicast", "IPv4 multicast 224.0.0.0/4"),
    _Range(_is("is_multicast", 6), "multicast", "IPv6 multicast ff00::/8"),
    _Range(_within("255.255.255.255/32"), "reserved", "limited broadcast 255.255.255.255"),
    _Range(_is("is_reserved", 4), "reserved", "reserved range 240.0.0.0/4"),
)

_LOOPBACK: tuple[_Range, ...] = (
    _Range(_is("is_loopback", 4), "loopback", "IPv4 loopback 127.0.0.0/8"),
    _Range(_is("is_loopback", 6), "loopback", "IPv6 loopback ::1"),
)

_PRIVATE: tuple[_Range, ...] = (
    _Range(_within("10.0.0.0/8"), "private", "private network 10.0.0.0/8 (RFC 1918)"),
    _Range(_within("172.16.0.0/12"), "private", "private network 172.16.0.0/12 (RFC 1918)"),
    _Range(_within("192.168.0.0/16"), "private", "private network 192.168.0.0/16 (RFC 1918)"),
    _Range(_within("100.64.0.0/10"), "private", "carrier-grade NAT 100.64.0.0/10 (RFC 6598)"),
    _Range(_within("fc00::/7"), "private", "IPv6 unique local fc00::/7"),
    _Range(_within("fec0::/10"), "private", "deprecated IPv6 site-local fec0::/10"),
)

# Special-purpose ranges that are not globally routable. Unlike _ALWAYS_REFUSED they hold no
# credentials-bearing service, so an operator may open them with allow_cidrs (some networks
# use 198.18.0.0/15 internally, for instance).
_NOT_ROUTABLE: tuple[_Range, ...] = (
    _Range(_within("192.0.0.0/24"), "reserved", "IETF protocol assignments 192.0.0.0/24"),
    _Range(_within("192.0.2.0/24"), "reserved", "documentation range 192.0.2.0/24"),
    _Range(_within("198.18.0.0/15"), "reserved", "benchmarking range 198.18.0.0/15"),
    _Range(_within("198.51.100.0/24"), "reserved", "documentation range 198.51.100.0/24"),
    _Range(_within("203.0.113.0/24"), "reserved", "documentation range 203.0.113.0/24"),
    _Range(_within("::/8"), "reserved", "reserved IPv6 range ::/8 (IPv4-compatible and others)"),
    _Range(_within("100::/64"), "reserved", "IPv6 discard prefix 100::/64"),
    _Range(_within("2001:2::/48"), "reserved", "IPv6 benchmarking 2001:2::/48"),
    _Range(_within("2001:10::/28"), "reserved", "IPv6 ORCHID 2001:10::/28"),
    _Range(_within("2001:db8::/32"), "reserved", "IPv6 documentation 2001:db8::/32"),
    _Range(_within("3fff::/20"), "reserved", "IPv6 documentation 3fff::/20"),
)

# Host names that resolve to a metadata endpoint inside the cloud. check_resolved would catch
# them through DNS too; refusing them by name already at registration gives a clearer answer.
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

# Fixed representatives of "localhost": resolvers map the name to these.
_LOCALHOST_ADDRESSES: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)


@dataclass(frozen=True)
class UrlPolicy:
    """Which destinations are acceptable. The always-refused set is not configurable."""

    #: RFC 1918, CGNAT and IPv6 ULA destinations; partners commonly run callbacks there.
    allow_private: bool = True
    #: 127.0.0.0/8 and ::1 (the bridge's own host).
    allow_loopback: bool = False
    #: Extra allowed networks (e.g. ``"127.0.0.0/8"`` for local tests). They override the
    #: private/loopback/not-routable refusals, never the always-refused set. Host bits may be
    #: set ("127.0.0.1/8"), as the settings validator accepts them.
    allow_cidrs: tuple[str, ...] = ()
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cidrs: Iterable[str] = self.allow_cidrs
        # A lone string would otherwise be iterated character by character.
        if isinstance(cidrs, str):
            cidrs = (cidrs,)
        cidrs = tuple(cidrs)
        networks: list[IPNetwork] = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(f"allow_cidrs entry {cidr!r} is not a CIDR network") from exc
        # Frozen dataclass: normalise through object.__setattr__ so lists become hashable tuples
        # and CIDRs are parsed once, not on every check.
        object.__setattr__(self, "allow_cidrs", cidrs)
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_settings(cls, settings: Any) -> UrlPolicy:
        """Build the policy from :class:`bridge.settings.Settings` (or any object alike).

        Reads ``dest_allow_private`` and ``dest_allow``; loopback stays refused unless listed in
        ``dest_allow`` (there is no setting for it on purpose).
        """
        return cls(
            allow_private=bool(settings.dest_allow_private),
            allow_loopback=False,
            allow_cidrs=tuple(settings.dest_allow or ()),
        )

    def allows_explicitly(self, ip: IPAddress) -> bool:
        """Whether ``ip`` lies in one of :attr:`allow_cidrs`."""
        return any(ip in network for network in self._networks)


@dataclass(frozen=True)
class UrlVerdict:
    """Outcome of a check. ``reason`` is a stable machine code, ``message`` is for humans."""

    ok: bool
    reason: str | None
    message: str | None
    #: A refused destination will not become acceptable by retrying (False for "unresolvable").
    permanent: bool = True


_OK = UrlVerdict(ok=True, reason=None, message=None)


def _refuse(reason: str, message: str, *, permanent: bool = True) -> UrlVerdict:
    return UrlVerdict(ok=False, reason=reason, message=message, permanent=permanent)


def _quote(text: str) -> str:
    """repr() of a URL part, shortened: messages end up in logs and API answers."""
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT] + "…"
    return repr(text)


# --- addresses -------------------------------------------------------------------------------


def _find(ip: IPAddress, ranges: tuple[_Range, ...]) -> _Range | None:
    for entry in ranges:
        if entry.contains(ip):
            return entry
    return None


def _unwrap(ip: IPAddress) -> IPAddress:
    # ::ffff:a.b.c.d reaches the IPv4 host a.b.c.d on dual-stack sockets.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _classify(ip: IPAddress, policy: UrlPolicy) -> tuple[str, str] | None:
    """``None`` if acceptable, else ``(reason, explanation of the rule)``."""
    ip = _unwrap(ip)
    hit = _find(ip, _ALWAYS_REFUSED)
    if hit is not None:
        return hit.reason, f"{hit.label}, which is always refused"
    if policy.allows_explicitly(ip):
        return None
    hit = _find(ip, _LOOPBACK)
    if hit is not None:
        if policy.allow_loopback:
            return None
        return hit.reason, f"{hit.label}, refused unless allowed (allow_loopback or allow_cidrs)"
    hit = _find(ip, _PRIVATE)
    if hit is not None:
        if policy.allow_private:
            return None
        return hit.reason, f"{hit.label}, refused because private destinations are disabled"
    hit = _find(ip, _NOT_ROUTABLE)
    if hit is not None:
        return hit.reason, f"{hit.label}, not globally routable; refused unless in allow_cidrs"
    return None


def _describe(ip: IPAddress) -> str:
    inner = _unwrap(ip)
    if inner is not ip:
        return f"{ip} (IPv4-mapped {inner})"
    return str(ip)


def check_address(ip: IPAddress, policy: UrlPolicy) -> UrlVerdict:
    """Classify one IP address under ``policy`` (see the module docstring for the order)."""
    found = _classify(ip, policy)
    if found is None:
        return _OK
    reason, rule = found
    return _refuse(reason, f"address {_describe(ip)} is {rule}")


# --- URL syntax ------------------------------------------------------------------------------


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 address of ``host`` as ``inet_aton`` (and so ``getaddrinfo``) reads it, else ``None``.

    One to four parts, each decimal, octal (leading ``0``) or hex (``0x``); the last part fills
    all remaining bytes: ``127.1`` is 127.0.0.1 and ``2130706433`` too. The C library's own
    parser, so the host is read exactly as the HTTP client's resolver will read it. (glibc also
    ignores anything after a space; hosts reaching here have no whitespace.)
    """
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):  # OSError: not an address; ValueError: an embedded NUL
        return None


def _ends_in_number(host: str) -> bool:
    """WHATWG's test for "this host is meant as IPv4": last label numeric or 0x-hex."""
    last = host.rsplit(".", 1)[-1]
    if _DECIMAL.fullmatch(last):
        return True
    return last[:2] in ("0x", "0X") and (last[2:] == "" or _HEX.fullmatch(last[2:]) is not None)


def _bad_character(url: str) -> int | None:
    """Index of the first whitespace, control, invisible or backslash character."""
    for index, char in enumerate(url):
        # isprintable() is False for controls, format characters (zero-width, bidi overrides),
        # separators other than ASCII space, surrogates and unassigned code points.
        if char == "\\" or char.isspace() or not char.isprintable():
            return index
    return None


class _Target(NamedTuple):
    """What check_resolved needs from a URL that passed check_url."""

    connect_host: str  # ASCII host as the HTTP client will resolve it
    port: int
    literal: bool  # an IP literal: nothing to resolve


class _Refused(Exception):
    """Internal short-cut out of the parsing steps; never escapes this module."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.verdict = _refuse(reason, message)


def _parse(url: str, policy: UrlPolicy) -> UrlVerdict | _Target:
    """The refusal verdict, or the target of an acceptable URL."""
    try:
        return _parse_or_raise(url, policy)
    except _Refused as refused:
        return refused.verdict


def _parse_or_raise(url: str, policy: UrlPolicy) -> _Target:
    if not isinstance(url, str):
        raise _Refused("bad_url", "callback URL must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise _Refused(
            "too_long",
            f"callback URL is {len(url)} characters long; at most {MAX_URL_LENGTH} are allowed",
        )
    # Checked before parsing: urlsplit silently drops tabs and newlines and strips leading
    # controls, so the parsed URL would not be the URL the partner gave.
    position = _bad_character(url)
    if position is not None:
        raise _Refused(
            "bad_url",
            f"callback URL contains whitespace, a control character or a backslash at "
            f"position {position}",
        )
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        # The exception text may quote the netloc, credentials included: use a fixed message.
        raise _Refused("bad_url", "callback URL cannot be parsed (malformed host)") from None
    scheme = parts.scheme  # urlsplit lower-cases it
    if scheme not in _ALLOWED_SCHEMES:
        shown = _quote(scheme) if scheme else "(none)"
        raise _Refused("bad_scheme", f"URL scheme {shown} is not allowed; use http or https")
    netloc = parts.netloc
    if "@" in netloc:
        raise _Refused(
            "bad_url",
            "callback URL must not contain credentials (user:password@ in the authority): "
            "they would be stored and logged",
        )
    host, port_text, bracketed = _split_netloc(netloc)
    if not host:
        raise _Refused("no_host", "callback URL has no host (expected scheme://host[:port]/…)")
    port = _DEFAULT_PORTS[scheme]
    if port_text is not None:
        if not (_DECIMAL.fullmatch(port_text) and 1 <= int(port_text) <= 65535):
            raise _Refused("bad_url", f"callback URL port {_quote(port_text)} is not in 1..65535")
        port = int(port_text)
    if bracketed:
        return _check_ipv6_literal(host, port, policy)
    return _check_host_name(host, port, policy)


def _split_netloc(netloc: str) -> tuple[str, str | None, bool]:
    """``(host, port text or None, bracketed)``; done here because urlsplit's ``.port`` and
    ``.hostname`` raise or guess on odd input."""
    if netloc.startswith("["):
        end = netloc.find("]")
        rest = netloc[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise _Refused("bad_url", "callback URL host has malformed [IPv6] brackets")
        return netloc[1:end], (rest[1:] if rest else None), True
    if "[" in netloc or "]" in netloc:
        raise _Refused("bad_url", "callback URL host has malformed [IPv6] brackets")
    host, colon, port_text = netloc.partition(":")
    return host, (port_text if colon else None), False


def _refuse_address(host: str, ip: IPAddress, policy: UrlPolicy) -> None:
    found = _classify(ip, policy)
    if found is not None:
        reason, rule = found
        raise _Refused(reason, f"callback URL host {_quote(host)} is {_describe(ip)}: {rule}")


def _check_ipv6_literal(host: str, port: int, policy: UrlPolicy) -> _Target:
    shown = f"[{host}]"
    # Zone ids ("%25eth0") only make sense for link-local, which is refused anyway.
    if "%" in host:
        raise _Refused("bad_url", f"callback URL host {_quote(shown)} has a zone id")
    try:
        ip = ipaddress.IPv6Address(host)
    except ValueError:
        raise _Refused("bad_url", f"callback URL host {_quote(shown)} is not IPv6") from None
    _refuse_address(shown, ip, policy)
    return _Target(host, port, literal=True)


def _check_host_name(host: str, port: int, policy: UrlPolicy) -> _Target:
    if host.isascii():
        ascii_host = host.lower()
    else:
        # An internationalised name: clients send its IDNA form, and IDNA maps look-alikes to
        # ASCII (fullwidth "１２７.０.０.１" becomes "127.0.0.1"), so classify that form.
        try:
            ascii_host = host.encode("idna").decode("ascii").lower()
        except (UnicodeError, ValueError):
            message = f"callback URL host {_quote(host)} is not a valid name"
            raise _Refused("bad_url", message) from None
    # Charset checked after IDNA: nameprep can turn fullwidth "＠" or "％" into ASCII ones.
    if not _HOST_CHARS.fullmatch(ascii_host):
        raise _Refused("bad_url", f"callback URL host {_quote(host)} has characters not allowed")
    # One trailing dot marks a fully qualified name; "127.0.0.1." and "localhost." still mean
    # the same host to most clients, so classify without it but resolve it as written.
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    if not name or "" in name.split("."):
        raise _Refused("bad_url", f"callback URL host {_quote(host)} has an empty label")
    ip = _inet_aton(name)
    if ip is not None:
        _refuse_address(host, ip, policy)
        return _Target(str(ip), port, literal=True)
    if _ends_in_number(name):
        raise _Refused(
            "bad_url", f"callback URL host {_quote(host)} looks like IPv4 but is not an address"
        )
    if name in _METADATA_NAMES:
        raise _Refused(
            "metadata", f"callback URL host {_quote(host)} is a cloud metadata name, always refused"
        )
    if name == "localhost" or name.endswith(".localhost"):
        # These names resolve to loopback (RFC 6761). allow_cidrs covering 127.0.0.1 or ::1
        # opens them too; check_resolved then vets every address they resolve to.
        opened = policy.allow_loopback or any(
            policy.allows_explicitly(address) for address in _LOCALHOST_ADDRESSES
        )
        if not opened:
            raise _Refused(
                "loopback",
                f"callback URL host {_quote(host)} is a loopback name, refused unless allowed "
                f"(allow_loopback or allow_cidrs)",
            )
    return _Target(ascii_host, port, literal=False)


def check_url(url: str, policy: UrlPolicy) -> UrlVerdict:
    """Check ``url`` syntactically and classify a literal IP host; no DNS lookups."""
    parsed = _parse(url, policy)
    return parsed if isinstance(parsed, UrlVerdict) else _OK


# --- resolution ------------------------------------------------------------------------------


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_resolved(
    url: str,
    policy: UrlPolicy,
    *,
    resolver: Resolver | None = None,
) -> UrlVerdict:
    """:func:`check_url`, then resolve a host name and refuse if ANY address is refused.

    Checking every answer matters: the client may connect to any of them, and a rebinding
    attacker serves one harmless and one internal address. ``resolver(host, port)`` returns
    address strings; the default uses the event loop's ``getaddrinfo``. Failures (exception or
    no address) give ``unresolvable`` with ``permanent=False``: DNS may come back.
    """
    target = _parse(url, policy)
    if isinstance(target, UrlVerdict):
        return target
    if target.literal:
        return _OK
    resolve = resolver or _getaddrinfo
    try:
        addresses = await resolve(target.connect_host, target.port)
    except Exception as exc:  # noqa: BLE001 - any resolver failure means "try again later"
        return _refuse(
            "unresolvable",
            f"callback URL host {_quote(target.connect_host)} cannot be resolved "
            f"({type(exc).__name__})",
            permanent=False,
        )
    if not addresses:
        return _refuse(
            "unresolvable",
            f"callback URL host {_quote(target.connect_host)} resolved to no address",
            permanent=False,
        )
    for text in dict.fromkeys(addresses):  # de-duplicated, in answer order
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            # A resolver answer we cannot read is not one we can vouch for.
            return _refuse(
                "unresolvable",
                f"callback URL host {_quote(target.connect_host)} resolved to an unreadable "
                f"address {_quote(str(text))}",
                permanent=False,
            )
        found = _classify(ip, policy)
        if found is not None:
            reason, rule = found
            return _refuse(
                reason,
                f"callback URL host {_quote(target.connect_host)} resolves to {_describe(ip)}, "
                f"which is {rule}",
            )
    return _OK
