"""Where a webhook may be sent: public addresses only, unless a setting allows loopback and private ones.

A URL's host is resolved here and nowhere else (`lookup`), once per check: every address it
resolves to must pass, and a delivery connects to those checked addresses (`experiments.
notifications.sending`), never to the result of a second lookup that a DNS answer could change.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

ALLOW_PRIVATE_HINT = "an operator can allow them with DIFFPLATFORM_WEBHOOK_ALLOW_PRIVATE=1"
NOT_PUBLIC = "refused: not a public address"
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use translation: never public
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class AddressRefused(ValueError):
    """The URL cannot be delivered to; the message says why and what fixes it."""


class Unresolvable(AddressRefused):
    """The host did not resolve (now): refused when a URL is saved, retried when a delivery is due."""


class CheckedUrl(str):
    """A URL already checked by `check_webhook_url` (so that a second check costs no lookup)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`addresses`, every one checked) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def is_public_address(ip) -> bool:
    """Whether `ip` is a globally routed unicast address, with any IPv4 address embedded in an IPv6
    one (mapped, compatible, 6to4, NAT64, Teredo server and client) public too."""
    ip = ipaddress.ip_address(str(ip).split("%")[0])
    if ip.version == 6:
        if ip in _NAT64_LOCAL:
            return False
        translated = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if translated is not None:  # the packets go to this IPv4 address
            return is_public_address(translated)
        if any(not is_public_address(embedded) for embedded in _tunnelled_ipv4(ip)):
            return False
    special = ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
    special = special or ip.is_reserved or ip.is_unspecified or (ip.version == 6 and ip.is_site_local)
    return ip.is_global and not special


def _tunnelled_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried in an IPv6 one: 6to4 (2002::/16), Teredo (2001::/32: server and
    client) and the deprecated IPv4-compatible form (::a.b.c.d)."""
    found = [ip.sixtofour, *(ip.teredo or ())]
    if ip in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]


def may_receive(address: str) -> bool:
    """A public address, or (with DIFFPLATFORM_WEBHOOK_ALLOW_PRIVATE) any but multicast and unspecified."""
    if is_public_address(address):
        return True
    ip = ipaddress.ip_address(address.split("%")[0])
    return settings.WEBHOOK_ALLOW_PRIVATE and not (ip.is_multicast or ip.is_unspecified)


def lookup(host: str, port: int) -> list[str]:
    """Every address `host` resolves to: the one DNS lookup of a webhook check."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(info[4][0] for info in found))


def resolve(url: str) -> Target:
    """The URL's target with every address its host resolves to checked; `AddressRefused` otherwise."""
    if _UNSAFE_CHARACTERS.search(url):
        raise AddressRefused("A webhook URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - raises on a malformed IPv6 literal
    except ValueError:
        raise AddressRefused("The webhook URL is malformed; write it as http(s)://host[:port]/path.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("A webhook URL must be http:// or https:// with a host name.")
    if parts.username or parts.password:
        raise AddressRefused("A webhook URL must not carry a user name or password; sign with the webhook secret.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("The webhook URL's port is not a number between 1 and 65535.") from None
    try:
        addresses = lookup(parts.hostname, port)
    except (OSError, UnicodeError):
        raise Unresolvable(f"The webhook host {parts.hostname!r} does not resolve.") from None
    if not addresses or not all(may_receive(address) for address in addresses):
        raise AddressRefused(
            f"The webhook host {parts.hostname!r} is not a public address (loopback, private, link-local, "
            f"multicast and reserved addresses are refused, written in any form; {ALLOW_PRIVATE_HINT}). "
            "Use a URL whose host name resolves to public addresses only."
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path, tuple(addresses))


def check_webhook_url(url: str) -> CheckedUrl:
    """`url` if it is an http(s) URL whose host resolves only to addresses we may send to."""
    if isinstance(url, CheckedUrl):
        return url
    resolve(url)
    return CheckedUrl(url)
