"""Which webhook URLs promptq calls and which addresses it connects to
(promptq.domain.webhook_urls): every spelling of a private, loopback or metadata address is
seen through, and the metadata services are refused even where local URLs are allowed."""

from __future__ import annotations

import ipaddress

import pytest

from promptq.contract import UrlRefusal as RoundField
from promptq.domain.webhook_urls import check_address, check_url

# url -> (refusal without allow_local, refusal with it); None: accepted.
URLS = {
    # accepted
    "https://example.com/hooks/promptq": (None, None),
    "https://example.com": (None, None),
    "https://hooks.example.co.uk:8443/a?b=c": (None, None),
    "HTTPS://EXAMPLE.COM/Path": (None, None),  # scheme and host in any case
    "https://example.com./x": (None, None),  # the root's trailing dot
    "https://example.com:/x": (None, None),  # an empty port is the default
    "https://8.8.8.8/x": (None, None),
    "https://[2606:4700:4700::1111]:443/": (None, None),
    "https://[::ffff:8.8.8.8]/": (None, None),  # an IPv4-mapped public address is that address
    "https://bücher.example/": (None, None),  # IDNA
    "https://xn--bcher-kva.example/": (None, None),
    "https://my_host.example.com/": (None, None),
    # scheme, userinfo, shape
    "http://example.com/": (RoundField.SCHEME, RoundField.SCHEME),  # http only to loopback, only locally
    "ftp://example.com/": (RoundField.SCHEME, RoundField.SCHEME),
    "//example.com/": (RoundField.SCHEME, RoundField.SCHEME),
    "example.com/hook": (RoundField.SCHEME, RoundField.SCHEME),
    "javascript:alert(1)": (RoundField.SCHEME, RoundField.SCHEME),
    "https://user:pass@example.com/": (RoundField.USERINFO, RoundField.USERINFO),
    "https://@example.com/": (RoundField.USERINFO, RoundField.USERINFO),
    "https://example.com@127.0.0.1/": (RoundField.USERINFO, RoundField.USERINFO),
    "https:///path": (RoundField.HOST, RoundField.HOST),
    "https://example.com:0/": (RoundField.MALFORMED, RoundField.MALFORMED),
    "https://example.com:65536/": (RoundField.MALFORMED, RoundField.MALFORMED),
    "https://example.com:8x/": (RoundField.MALFORMED, RoundField.MALFORMED),
    "https://exa mple.com/": (RoundField.MALFORMED, RoundField.MALFORMED),
    "https://example.com/\r\nX-Injected: 1": (RoundField.MALFORMED, RoundField.MALFORMED),
    "https://example.com\\@127.0.0.1/": (RoundField.MALFORMED, RoundField.MALFORMED),  # WHATWG reads \ as /
    "https://loc\u00adalhost/": (RoundField.MALFORMED, RoundField.MALFORMED),  # a soft hyphen (IDNA would drop it)
    "https://exa\u200bmple.com/": (RoundField.MALFORMED, RoundField.MALFORMED),  # zero-width space
    "https://" + "a" * 2048 + ".com/": (RoundField.MALFORMED, RoundField.MALFORMED),
    "https://%31%32%37.0.0.1/": (RoundField.HOST, RoundField.HOST),  # percent-encoded hosts: decoded by some parsers
    "https://exa!mple.com/": (RoundField.HOST, RoundField.HOST),
    "https://a..b.com/": (RoundField.HOST, RoundField.HOST),
    "https://-a.example.com/": (RoundField.HOST, RoundField.HOST),
    "https://" + "a" * 64 + ".com/": (RoundField.HOST, RoundField.HOST),
    "https://[v1.abc]/": (RoundField.HOST, RoundField.HOST),  # IPvFuture
    "https://[::1/": (RoundField.MALFORMED, RoundField.MALFORMED),
    "https://[fe80::1%25eth0]/": (RoundField.HOST, RoundField.HOST),  # a zone id
    # WHATWG: a host ending in a number is an IPv4 address, or invalid
    "https://1.2.3.4.5/": (RoundField.HOST, RoundField.HOST),
    "https://example.123/": (RoundField.HOST, RoundField.HOST),
    "https://09.0.0.1/": (RoundField.HOST, RoundField.HOST),  # 09 is no octal number
    "https://256.0.0.1/": (RoundField.HOST, RoundField.HOST),
    "https://4294967296/": (RoundField.HOST, RoundField.HOST),
    # loopback, however spelled: allowed only locally
    "https://localhost/": (RoundField.LOOPBACK, None),
    "http://localhost:5001/hook": (RoundField.LOOPBACK, None),
    "http://LOCALHOST./": (RoundField.LOOPBACK, None),
    "https://api.localhost/": (RoundField.LOOPBACK, None),
    "http://127.0.0.1:8080/": (RoundField.LOOPBACK, None),
    "https://127.1/": (RoundField.LOOPBACK, None),
    "https://0x7f.1/": (RoundField.LOOPBACK, None),
    "https://0x7F000001/": (RoundField.LOOPBACK, None),
    "https://2130706433/": (RoundField.LOOPBACK, None),
    "https://017700000001/": (RoundField.LOOPBACK, None),
    "https://0177.0.0.01/": (RoundField.LOOPBACK, None),
    "https://127.0.0.1./": (RoundField.LOOPBACK, None),
    "http://[::1]:8080/": (RoundField.LOOPBACK, None),
    "https://[0:0:0:0:0:0:0:1]/": (RoundField.LOOPBACK, None),
    "https://[::ffff:127.0.0.1]/": (RoundField.LOOPBACK, None),
    "https://[::ffff:7f00:1]/": (RoundField.LOOPBACK, None),
    "https://ｌｏｃａｌｈｏｓｔ/": (RoundField.LOOPBACK, None),  # full-width letters (IDNA maps them)
    "https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/": (RoundField.LOOPBACK, None),  # circled letters
    "https://１２７．０．０．１/": (RoundField.LOOPBACK, None),  # full-width digits and dots
    "https://127。0。0。1/": (RoundField.LOOPBACK, None),  # ideographic full stops
    "https://①②⑦.0.0.1/": (RoundField.LOOPBACK, None),
    # loopback embedded in an IPv6 transition address: refused even locally
    "https://[::127.0.0.1]/": (RoundField.LOOPBACK, RoundField.LOOPBACK),  # IPv4-compatible
    "https://[2002:7f00:1::]/": (RoundField.LOOPBACK, RoundField.LOOPBACK),  # 6to4
    "https://[64:ff9b::7f00:1]/": (RoundField.LOOPBACK, RoundField.LOOPBACK),  # NAT64
    # the metadata services: refused always
    "https://169.254.169.254/latest/meta-data/": (RoundField.METADATA, RoundField.METADATA),
    "http://169.254.169.254/": (RoundField.METADATA, RoundField.METADATA),
    "https://2852039166/": (RoundField.METADATA, RoundField.METADATA),
    "http://2852039166/": (RoundField.METADATA, RoundField.METADATA),
    "https://0xa9fea9fe/": (RoundField.METADATA, RoundField.METADATA),
    "https://0xA9.0xFE.0xA9.0xFE/": (RoundField.METADATA, RoundField.METADATA),
    "https://0251.0376.0251.0376/": (RoundField.METADATA, RoundField.METADATA),
    "https://169.254.43518/": (RoundField.METADATA, RoundField.METADATA),
    "https://169.16689662/": (RoundField.METADATA, RoundField.METADATA),
    "https://[::ffff:169.254.169.254]/": (RoundField.METADATA, RoundField.METADATA),
    "https://[::ffff:a9fe:a9fe]/": (RoundField.METADATA, RoundField.METADATA),
    "https://[2002:a9fe:a9fe::1]/": (RoundField.METADATA, RoundField.METADATA),
    "https://[64:ff9b::a9fe:a9fe]/": (RoundField.METADATA, RoundField.METADATA),
    "https://[fd00:ec2::254]/": (RoundField.METADATA, RoundField.METADATA),
    "https://[FD00:EC2:0::254]/": (RoundField.METADATA, RoundField.METADATA),
    "https://169.254.170.2/v2/credentials": (RoundField.METADATA, RoundField.METADATA),
    "https://100.100.100.200/": (RoundField.METADATA, RoundField.METADATA),
    "http://metadata.google.internal/computeMetadata/v1/": (RoundField.METADATA, RoundField.METADATA),
    "https://METADATA.GOOGLE.INTERNAL./": (RoundField.METADATA, RoundField.METADATA),
    "https://metadata/": (RoundField.METADATA, RoundField.METADATA),
    "https://ｍｅｔａｄａｔａ.google.internal/": (RoundField.METADATA, RoundField.METADATA),
    # private and other special addresses: refused, locally too
    "https://10.0.0.1/": (RoundField.PRIVATE, RoundField.PRIVATE),
    "https://10.1/": (RoundField.PRIVATE, RoundField.PRIVATE),
    "https://172.16.0.1/": (RoundField.PRIVATE, RoundField.PRIVATE),
    "https://172.31.255.255/": (RoundField.PRIVATE, RoundField.PRIVATE),
    "https://192.168.1.1/": (RoundField.PRIVATE, RoundField.PRIVATE),
    "https://3232235777/": (RoundField.PRIVATE, RoundField.PRIVATE),  # 192.168.1.1
    "https://[fd12:3456::1]/": (RoundField.PRIVATE, RoundField.PRIVATE),  # unique local
    "https://[fec0::1]/": (RoundField.PRIVATE, RoundField.PRIVATE),  # site local (deprecated)
    "https://[::ffff:10.0.0.1]/": (RoundField.PRIVATE, RoundField.PRIVATE),
    "https://[2002:c0a8:101::1]/": (RoundField.PRIVATE, RoundField.PRIVATE),  # 6to4 of 192.168.1.1
    "https://169.254.1.1/": (RoundField.LINK_LOCAL, RoundField.LINK_LOCAL),
    "https://[fe80::1]/": (RoundField.LINK_LOCAL, RoundField.LINK_LOCAL),
    "https://100.64.0.1/": (RoundField.SHARED, RoundField.SHARED),
    "https://100.127.255.255/": (RoundField.SHARED, RoundField.SHARED),
    "https://224.0.0.1/": (RoundField.MULTICAST, RoundField.MULTICAST),
    "https://[ff02::1]/": (RoundField.MULTICAST, RoundField.MULTICAST),
    "https://0.0.0.0/": (RoundField.UNSPECIFIED, RoundField.UNSPECIFIED),
    "https://0/": (RoundField.UNSPECIFIED, RoundField.UNSPECIFIED),
    "https://0.1.2.3/": (RoundField.UNSPECIFIED, RoundField.UNSPECIFIED),
    "https://[::]/": (RoundField.UNSPECIFIED, RoundField.UNSPECIFIED),
    "https://255.255.255.255/": (RoundField.RESERVED, RoundField.RESERVED),
    "https://240.0.0.1/": (RoundField.RESERVED, RoundField.RESERVED),
    "https://192.0.2.1/": (RoundField.RESERVED, RoundField.RESERVED),  # documentation
    "https://198.18.0.1/": (RoundField.RESERVED, RoundField.RESERVED),  # benchmarking
    "https://[2001:db8::1]/": (RoundField.RESERVED, RoundField.RESERVED),  # documentation
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/": (RoundField.RESERVED, RoundField.RESERVED),  # Teredo
    "https://[2002:808:808::1]/": (RoundField.RESERVED, RoundField.RESERVED),  # 6to4, even of a public address
    "https://[100::1]/": (RoundField.RESERVED, RoundField.RESERVED),  # discard-only
    # names that resolve only inside a network
    "https://intranet/": (RoundField.INTERNAL_NAME, RoundField.INTERNAL_NAME),
    "https://redis:6379/": (RoundField.INTERNAL_NAME, RoundField.INTERNAL_NAME),
    "https://printer.local/": (RoundField.INTERNAL_NAME, RoundField.INTERNAL_NAME),
    "https://db.internal/": (RoundField.INTERNAL_NAME, RoundField.INTERNAL_NAME),
    "https://router.home.arpa/": (RoundField.INTERNAL_NAME, RoundField.INTERNAL_NAME),
    "https://nas.lan/": (RoundField.INTERNAL_NAME, RoundField.INTERNAL_NAME),
    "https://home.arpa/": (RoundField.INTERNAL_NAME, RoundField.INTERNAL_NAME),
    "https://wpad.corp./": (RoundField.INTERNAL_NAME, RoundField.INTERNAL_NAME),
}


@pytest.mark.parametrize("url", URLS, ids=lambda u: u[:60].encode("unicode_escape").decode())
def test_check_url(url):
    remote, local = URLS[url]
    assert (check_url(url), check_url(url, allow_local=True)) == (remote, local)


def test_a_refusal_is_a_contract_name_and_a_string():
    refused = check_url("https://10.0.0.1/")
    assert refused == "private" and isinstance(refused, str) and str(refused) == "private"
    assert check_url(None) is RoundField.MALFORMED  # type: ignore[arg-type]


# What a name may resolve to at delivery time (DNS rebinding): the same rules, on the address.
ADDRESSES = {
    "93.184.215.14": (None, None),
    "2606:4700:4700::1111": (None, None),
    "::ffff:93.184.215.14": (None, None),
    "127.0.0.1": (RoundField.LOOPBACK, None),
    "127.255.255.254": (RoundField.LOOPBACK, None),
    "::1": (RoundField.LOOPBACK, None),
    "::ffff:127.0.0.1": (RoundField.LOOPBACK, None),
    "169.254.169.254": (RoundField.METADATA, RoundField.METADATA),
    "fd00:ec2::254": (RoundField.METADATA, RoundField.METADATA),
    "::ffff:169.254.169.254": (RoundField.METADATA, RoundField.METADATA),
    "10.20.30.40": (RoundField.PRIVATE, RoundField.PRIVATE),
    "fc00::1": (RoundField.PRIVATE, RoundField.PRIVATE),
    "fe80::1%eth0": (RoundField.HOST, RoundField.HOST),
    "100.64.0.1": (RoundField.SHARED, RoundField.SHARED),
    "0.0.0.0": (RoundField.UNSPECIFIED, RoundField.UNSPECIFIED),
    "239.255.255.250": (RoundField.MULTICAST, RoundField.MULTICAST),
    "2002:a00:1::": (RoundField.PRIVATE, RoundField.PRIVATE),
    "not an address": (RoundField.HOST, RoundField.HOST),
}


@pytest.mark.parametrize("ip", ADDRESSES)
def test_check_address(ip):
    remote, local = ADDRESSES[ip]
    assert (check_address(ip), check_address(ip, allow_local=True)) == (remote, local)


def test_check_address_takes_ipaddress_objects_as_resolvers_give_them():
    assert check_address(ipaddress.ip_address("10.0.0.1")) is RoundField.PRIVATE
    assert check_address(ipaddress.ip_address("8.8.4.4")) is None
