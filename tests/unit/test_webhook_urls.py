"""Which webhook URLs promptq calls and which addresses it connects to
(promptq.domain.webhook_urls): every spelling of a private, loopback or metadata address is
seen through, and the metadata services are refused even where local URLs are allowed."""

from __future__ import annotations

import ipaddress

import pytest

from promptq.contract import UrlRefusal as R
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
    "http://example.com/": (R.SCHEME, R.SCHEME),  # http only to loopback, only locally
    "ftp://example.com/": (R.SCHEME, R.SCHEME),
    "//example.com/": (R.SCHEME, R.SCHEME),
    "example.com/hook": (R.SCHEME, R.SCHEME),
    "javascript:alert(1)": (R.SCHEME, R.SCHEME),
    "https://user:pass@example.com/": (R.USERINFO, R.USERINFO),
    "https://@example.com/": (R.USERINFO, R.USERINFO),
    "https://example.com@127.0.0.1/": (R.USERINFO, R.USERINFO),
    "https:///path": (R.HOST, R.HOST),
    "https://example.com:0/": (R.MALFORMED, R.MALFORMED),
    "https://example.com:65536/": (R.MALFORMED, R.MALFORMED),
    "https://example.com:8x/": (R.MALFORMED, R.MALFORMED),
    "https://exa mple.com/": (R.MALFORMED, R.MALFORMED),
    "https://example.com/\r\nX-Injected: 1": (R.MALFORMED, R.MALFORMED),
    "https://example.com\\@127.0.0.1/": (R.MALFORMED, R.MALFORMED),  # WHATWG reads \ as /
    "https://loc\u00adalhost/": (R.MALFORMED, R.MALFORMED),  # a soft hyphen (IDNA would drop it)
    "https://exa\u200bmple.com/": (R.MALFORMED, R.MALFORMED),  # zero-width space
    "https://" + "a" * 2048 + ".com/": (R.MALFORMED, R.MALFORMED),
    "https://%31%32%37.0.0.1/": (R.HOST, R.HOST),  # percent-encoded hosts: decoded by some parsers
    "https://exa!mple.com/": (R.HOST, R.HOST),
    "https://a..b.com/": (R.HOST, R.HOST),
    "https://-a.example.com/": (R.HOST, R.HOST),
    "https://" + "a" * 64 + ".com/": (R.HOST, R.HOST),
    "https://[v1.abc]/": (R.HOST, R.HOST),  # IPvFuture
    "https://[::1/": (R.MALFORMED, R.MALFORMED),
    "https://[fe80::1%25eth0]/": (R.HOST, R.HOST),  # a zone id
    # WHATWG: a host ending in a number is an IPv4 address, or invalid
    "https://1.2.3.4.5/": (R.HOST, R.HOST),
    "https://example.123/": (R.HOST, R.HOST),
    "https://09.0.0.1/": (R.HOST, R.HOST),  # 09 is no octal number
    "https://256.0.0.1/": (R.HOST, R.HOST),
    "https://4294967296/": (R.HOST, R.HOST),
    # loopback, however spelled: allowed only locally
    "https://localhost/": (R.LOOPBACK, None),
    "http://localhost:5001/hook": (R.LOOPBACK, None),
    "http://LOCALHOST./": (R.LOOPBACK, None),
    "https://api.localhost/": (R.LOOPBACK, None),
    "http://127.0.0.1:8080/": (R.LOOPBACK, None),
    "https://127.1/": (R.LOOPBACK, None),
    "https://0x7f.1/": (R.LOOPBACK, None),
    "https://0x7F000001/": (R.LOOPBACK, None),
    "https://2130706433/": (R.LOOPBACK, None),
    "https://017700000001/": (R.LOOPBACK, None),
    "https://0177.0.0.01/": (R.LOOPBACK, None),
    "https://127.0.0.1./": (R.LOOPBACK, None),
    "http://[::1]:8080/": (R.LOOPBACK, None),
    "https://[0:0:0:0:0:0:0:1]/": (R.LOOPBACK, None),
    "https://[::ffff:127.0.0.1]/": (R.LOOPBACK, None),
    "https://[::ffff:7f00:1]/": (R.LOOPBACK, None),
    "https://ｌｏｃａｌｈｏｓｔ/": (R.LOOPBACK, None),  # full-width letters (IDNA maps them)
    "https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/": (R.LOOPBACK, None),  # circled letters
    "https://１２７．０．０．１/": (R.LOOPBACK, None),  # full-width digits and dots
    "https://127。0。0。1/": (R.LOOPBACK, None),  # ideographic full stops
    "https://①②⑦.0.0.1/": (R.LOOPBACK, None),
    # loopback embedded in an IPv6 transition address: refused even locally
    "https://[::127.0.0.1]/": (R.LOOPBACK, R.LOOPBACK),  # IPv4-compatible
    "https://[2002:7f00:1::]/": (R.LOOPBACK, R.LOOPBACK),  # 6to4
    "https://[64:ff9b::7f00:1]/": (R.LOOPBACK, R.LOOPBACK),  # NAT64
    # the metadata services: refused always
    "https://169.254.169.254/latest/meta-data/": (R.METADATA, R.METADATA),
    "http://169.254.169.254/": (R.METADATA, R.METADATA),
    "https://2852039166/": (R.METADATA, R.METADATA),
    "http://2852039166/": (R.METADATA, R.METADATA),
    "https://0xa9fea9fe/": (R.METADATA, R.METADATA),
    "https://0xA9.0xFE.0xA9.0xFE/": (R.METADATA, R.METADATA),
    "https://0251.0376.0251.0376/": (R.METADATA, R.METADATA),
    "https://169.254.43518/": (R.METADATA, R.METADATA),
    "https://169.16689662/": (R.METADATA, R.METADATA),
    "https://[::ffff:169.254.169.254]/": (R.METADATA, R.METADATA),
    "https://[::ffff:a9fe:a9fe]/": (R.METADATA, R.METADATA),
    "https://[2002:a9fe:a9fe::1]/": (R.METADATA, R.METADATA),
    "https://[64:ff9b::a9fe:a9fe]/": (R.METADATA, R.METADATA),
    "https://[fd00:ec2::254]/": (R.METADATA, R.METADATA),
    "https://[FD00:EC2:0::254]/": (R.METADATA, R.METADATA),
    "https://169.254.170.2/v2/credentials": (R.METADATA, R.METADATA),
    "https://100.100.100.200/": (R.METADATA, R.METADATA),
    "http://metadata.google.internal/computeMetadata/v1/": (R.METADATA, R.METADATA),
    "https://METADATA.GOOGLE.INTERNAL./": (R.METADATA, R.METADATA),
    "https://metadata/": (R.METADATA, R.METADATA),
    "https://ｍｅｔａｄａｔａ.google.internal/": (R.METADATA, R.METADATA),
    # private and other special addresses: refused, locally too
    "https://10.0.0.1/": (R.PRIVATE, R.PRIVATE),
    "https://10.1/": (R.PRIVATE, R.PRIVATE),
    "https://172.16.0.1/": (R.PRIVATE, R.PRIVATE),
    "https://172.31.255.255/": (R.PRIVATE, R.PRIVATE),
    "https://192.168.1.1/": (R.PRIVATE, R.PRIVATE),
    "https://3232235777/": (R.PRIVATE, R.PRIVATE),  # 192.168.1.1
    "https://[fd12:3456::1]/": (R.PRIVATE, R.PRIVATE),  # unique local
    "https://[fec0::1]/": (R.PRIVATE, R.PRIVATE),  # site local (deprecated)
    "https://[::ffff:10.0.0.1]/": (R.PRIVATE, R.PRIVATE),
    "https://[2002:c0a8:101::1]/": (R.PRIVATE, R.PRIVATE),  # 6to4 of 192.168.1.1
    "https://169.254.1.1/": (R.LINK_LOCAL, R.LINK_LOCAL),
    "https://[fe80::1]/": (R.LINK_LOCAL, R.LINK_LOCAL),
    "https://100.64.0.1/": (R.SHARED, R.SHARED),
    "https://100.127.255.255/": (R.SHARED, R.SHARED),
    "https://224.0.0.1/": (R.MULTICAST, R.MULTICAST),
    "https://[ff02::1]/": (R.MULTICAST, R.MULTICAST),
    "https://0.0.0.0/": (R.UNSPECIFIED, R.UNSPECIFIED),
    "https://0/": (R.UNSPECIFIED, R.UNSPECIFIED),
    "https://0.1.2.3/": (R.UNSPECIFIED, R.UNSPECIFIED),
    "https://[::]/": (R.UNSPECIFIED, R.UNSPECIFIED),
    "https://255.255.255.255/": (R.RESERVED, R.RESERVED),
    "https://240.0.0.1/": (R.RESERVED, R.RESERVED),
    "https://192.0.2.1/": (R.RESERVED, R.RESERVED),  # documentation
    "https://198.18.0.1/": (R.RESERVED, R.RESERVED),  # benchmarking
    "https://[2001:db8::1]/": (R.RESERVED, R.RESERVED),  # documentation
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/": (R.RESERVED, R.RESERVED),  # Teredo
    "https://[2002:808:808::1]/": (R.RESERVED, R.RESERVED),  # 6to4, even of a public address
    "https://[100::1]/": (R.RESERVED, R.RESERVED),  # discard-only
    # names that resolve only inside a network
    "https://intranet/": (R.INTERNAL_NAME, R.INTERNAL_NAME),
    "https://redis:6379/": (R.INTERNAL_NAME, R.INTERNAL_NAME),
    "https://printer.local/": (R.INTERNAL_NAME, R.INTERNAL_NAME),
    "https://db.internal/": (R.INTERNAL_NAME, R.INTERNAL_NAME),
    "https://router.home.arpa/": (R.INTERNAL_NAME, R.INTERNAL_NAME),
    "https://nas.lan/": (R.INTERNAL_NAME, R.INTERNAL_NAME),
    "https://home.arpa/": (R.INTERNAL_NAME, R.INTERNAL_NAME),
    "https://wpad.corp./": (R.INTERNAL_NAME, R.INTERNAL_NAME),
}


@pytest.mark.parametrize("url", URLS, ids=lambda u: u[:60].encode("unicode_escape").decode())
def test_check_url(url):
    remote, local = URLS[url]
    assert (check_url(url), check_url(url, allow_local=True)) == (remote, local)


def test_a_refusal_is_a_contract_name_and_a_string():
    refused = check_url("https://10.0.0.1/")
    assert refused == "private" and isinstance(refused, str) and str(refused) == "private"
    assert check_url(None) is R.MALFORMED  # type: ignore[arg-type]


# What a name may resolve to at delivery time (DNS rebinding): the same rules, on the address.
ADDRESSES = {
    "93.184.215.14": (None, None),
    "2606:4700:4700::1111": (None, None),
    "::ffff:93.184.215.14": (None, None),
    "127.0.0.1": (R.LOOPBACK, None),
    "127.255.255.254": (R.LOOPBACK, None),
    "::1": (R.LOOPBACK, None),
    "::ffff:127.0.0.1": (R.LOOPBACK, None),
    "169.254.169.254": (R.METADATA, R.METADATA),
    "fd00:ec2::254": (R.METADATA, R.METADATA),
    "::ffff:169.254.169.254": (R.METADATA, R.METADATA),
    "10.20.30.40": (R.PRIVATE, R.PRIVATE),
    "fc00::1": (R.PRIVATE, R.PRIVATE),
    "fe80::1%eth0": (R.HOST, R.HOST),
    "100.64.0.1": (R.SHARED, R.SHARED),
    "0.0.0.0": (R.UNSPECIFIED, R.UNSPECIFIED),
    "239.255.255.250": (R.MULTICAST, R.MULTICAST),
    "2002:a00:1::": (R.PRIVATE, R.PRIVATE),
    "not an address": (R.HOST, R.HOST),
}


@pytest.mark.parametrize("ip", ADDRESSES)
def test_check_address(ip):
    remote, local = ADDRESSES[ip]
    assert (check_address(ip), check_address(ip, allow_local=True)) == (remote, local)


def test_check_address_takes_ipaddress_objects_as_resolvers_give_them():
    assert check_address(ipaddress.ip_address("10.0.0.1")) is R.PRIVATE
    assert check_address(ipaddress.ip_address("8.8.4.4")) is None
