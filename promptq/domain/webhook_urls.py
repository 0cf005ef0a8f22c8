"""Which webhook URLs promptq calls, and which addresses it connects to: a guard against
server-side request forgery (a URL that makes the sender call into its own network). Pure: no
DNS, no I/O.

Two checks, both needed. ``check_url`` when an endpoint is created: https only, no userinfo, a
host that is a public DNS name or a public IP literal, however it is spelled (WHATWG's IPv4
forms ``2852039166``, ``0x7f.1``, ``0251.0376.0251.0376``; ``[::ffff:127.0.0.1]``; IDNA and
full-width spellings; a trailing dot; any case). ``check_address`` at every delivery, on each
address the name resolved to, just before connecting to that very address (a name may resolve
to a public address when checked and a private one later: DNS rebinding). Deliveries follow no
redirect.

``allow_local`` (the local stack's receivers) admits loopback only — 127.0.0.0/8, ::1,
``localhost`` — and http only to it; private networks stay refused, and the cloud metadata
services always are.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from promptq.contract.requests.webhooks import MAX_URL_CHARS
from promptq.contract.webhooks import UrlRefusal

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services: AWS, GCP, Azure, Oracle (169.254.169.254), ECS task metadata,
# AWS's IPv6 IMDS, Alibaba, Oracle's other.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"})
# Names that resolve only inside a network (RFC 6761, 6762, 8375; ICANN's .internal).
INTERNAL_SUFFIXES = (".local", ".internal", ".localdomain", ".home.arpa", ".lan", ".intranet", ".corp")

_net = ipaddress.ip_network
_PRIVATE_V4 = (_net("10.0.0.0/8"), _net("172.16.0.0/12"), _net("192.168.0.0/16"))
_SHARED_V4 = _net("100.64.0.0/10")
_RESERVED_V4 = tuple(
    _net(n) for n in ("192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4")
)
_GLOBAL_UNICAST_V6 = _net("2000::/3")
_SIXTOFOUR, _TEREDO, _NAT64 = _net("2002::/16"), _net("2001::/32"), _net("64:ff9b::/96")
_UNIQUE_LOCAL_V6, _SITE_LOCAL_V6 = _net("fc00::/7"), _net("fec0::/10")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]*|[0-9]+)")


def check_url(url: str, *, allow_local: bool = False) -> UrlRefusal | None:
    """Why ``url`` may not be an endpoint (None: it may)."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS or _has_unsafe_character(url):
        return UrlRefusal.MALFORMED
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or bracketed host
        return UrlRefusal.MALFORMED
    if parts.scheme not in ("https", "http"):
        return UrlRefusal.SCHEME
    if "@" in parts.netloc:
        return UrlRefusal.USERINFO
    if port == 0:
        return UrlRefusal.MALFORMED
    host = _host(_netloc_host(parts.netloc))
    if isinstance(host, UrlRefusal):
        return host
    refused = _check_name(host, allow_local=allow_local) if isinstance(host, str) else check_address(host, allow_local=allow_local)
    if refused is not None:
        return refused
    if parts.scheme == "http" and not (allow_local and _is_loopback(host)):
        return UrlRefusal.SCHEME
    return None


def check_address(ip: str | Address, *, allow_local: bool = False) -> UrlRefusal | None:
    """Why promptq may not connect to ``ip`` (None: it may): checked on each address a URL's
    name resolved to, at every delivery."""
    try:
        address = ip if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else ipaddress.ip_address(ip)
    except ValueError:
        return UrlRefusal.HOST
    if address in METADATA_ADDRESSES:
        return UrlRefusal.METADATA
    if isinstance(address, ipaddress.IPv6Address):
        return _check_v6(address, allow_local=allow_local)
    return _check_v4(address, allow_local=allow_local)


def _check_v4(address: ipaddress.IPv4Address, *, allow_local: bool) -> UrlRefusal | None:
    if address in _net("0.0.0.0/8"):
        return UrlRefusal.UNSPECIFIED  # 0.0.0.0 reaches the local host on Linux
    if address.is_loopback:
        return None if allow_local else UrlRefusal.LOOPBACK
    if any(address in net for net in _PRIVATE_V4):
        return UrlRefusal.PRIVATE
    if address.is_link_local:
        return UrlRefusal.LINK_LOCAL
    if address in _SHARED_V4:
        return UrlRefusal.SHARED
    if address.is_multicast:
        return UrlRefusal.MULTICAST
    if any(address in net for net in _RESERVED_V4) or not address.is_global:
        return UrlRefusal.RESERVED
    return None


def _check_v6(address: ipaddress.IPv6Address, *, allow_local: bool) -> UrlRefusal | None:
    if address.scope_id:
        return UrlRefusal.HOST  # fe80::1%eth0: an interface's address
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
        return check_address(address.ipv4_mapped, allow_local=allow_local)
    if address.is_unspecified:
        return UrlRefusal.UNSPECIFIED
    if address.is_loopback:
        return None if allow_local else UrlRefusal.LOOPBACK
    embedded = _embedded_v4(address)
    if embedded:  # transition addresses: refused, and said why by what they carry
        return next((r for r in map(lambda a: check_address(a, allow_local=False), embedded) if r), UrlRefusal.RESERVED)
    if address.is_link_local:
        return UrlRefusal.LINK_LOCAL
    if address in _UNIQUE_LOCAL_V6 or address in _SITE_LOCAL_V6:
        return UrlRefusal.PRIVATE
    if address.is_multicast:
        return UrlRefusal.MULTICAST
    if address not in _GLOBAL_UNICAST_V6 or address.is_private or not address.is_global:
        return UrlRefusal.RESERVED
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a 6to4, Teredo, NAT64 or IPv4-compatible (::a.b.c.d) address carries."""
    if address in _SIXTOFOUR and address.sixtofour is not None:
        return [address.sixtofour]
    if address in _TEREDO and address.teredo is not None:
        server, client = address.teredo
        return [client, server]
    packed = address.packed
    if address in _NAT64 or (packed[:12] == bytes(12) and int.from_bytes(packed[12:], "big") > 1):
        return [ipaddress.IPv4Address(packed[12:])]
    return []


def _is_loopback(host: str | Address) -> bool:
    if isinstance(host, str):
        return host == "localhost" or host.endswith(".localhost")
    mapped = host.ipv4_mapped if isinstance(host, ipaddress.IPv6Address) else None
    return (mapped or host).is_loopback


def _check_name(name: str, *, allow_local: bool) -> UrlRefusal | None:
    if name in METADATA_NAMES or name.endswith(".metadata.google.internal"):
        return UrlRefusal.METADATA
    if name == "localhost" or name.endswith(".localhost"):
        return None if allow_local else UrlRefusal.LOOPBACK
    if "." not in name or ("." + name).endswith(INTERNAL_SUFFIXES):
        return UrlRefusal.INTERNAL_NAME
    return None


def _has_unsafe_character(url: str) -> bool:
    """Whitespace, control characters and backslashes: parsers disagree on them (WHATWG reads
    ``\\`` as ``/``, Python does not), so a URL holding one is refused rather than read."""
    return any(c.isspace() or not c.isprintable() or c == "\\" for c in url)


def _host(netloc_host: str) -> str | Address | UrlRefusal:
    """The host as the sender would resolve it: an IP address, or a lower-case ASCII DNS name
    without its trailing dot. IPv4 in WHATWG's forms; IDNA (IDNA 2003, with nameprep:
    full-width and circled characters, soft hyphens and ideographic dots mapped)."""
    if netloc_host.startswith("["):
        return _bracketed(netloc_host)
    if "%" in netloc_host or not netloc_host:
        return UrlRefusal.HOST  # percent-encoded hosts are decoded by some parsers, not others
    try:
        ascii_host = netloc_host.lower().encode("idna").decode("ascii").lower()
    except UnicodeError:
        return UrlRefusal.HOST
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    labels = name.split(".")
    if not name or not all(labels):
        return UrlRefusal.HOST
    if _NUMBER.fullmatch(labels[-1]):  # WHATWG: a host ending in a number is an IPv4 address or invalid
        return _ipv4(labels) or UrlRefusal.HOST
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return UrlRefusal.HOST
    return name


def _netloc_host(netloc: str) -> str:
    """The host as written in the authority (userinfo refused before): without its port."""
    if netloc.startswith("["):
        return netloc[: netloc.index("]") + 1] if "]" in netloc else netloc
    return netloc.split(":", 1)[0]


def _bracketed(host: str) -> Address | UrlRefusal:
    if not host.endswith("]") or "%" in host:
        return UrlRefusal.HOST  # a zone id (fe80::1%25eth0) names an interface
    try:
        return ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return UrlRefusal.HOST


def _ipv4(labels: list[str]) -> ipaddress.IPv4Address | None:
    """WHATWG's IPv4 parser (inet_aton's forms): 1 to 4 numbers, each decimal, 0x hex or
    0-led octal; all but the last at most 255, the last filling the remaining bytes."""
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        if not _NUMBER.fullmatch(label):
            return None
        if label[:2].lower() == "0x":
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label[0] == "0":
            if not set(label) <= set("01234567"):
                return None
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + last
    return ipaddress.IPv4Address(value)
