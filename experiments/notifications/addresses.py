"""Where a webhook may be sent: public addresses only, unless a setting allows loopback and private ones.

A URL is checked when an experiment is saved and again before every delivery (a host name can be
re-pointed in between), against every address the host resolves to."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class AddressRefused(ValueError):
    """The URL cannot be delivered to; the message says why and what fixes it."""


def check_webhook_url(url: str) -> str:
    """`url` if it is an http(s) URL whose host resolves only to addresses we may send to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("A webhook URL must be http:// or https:// with a host name.")
    if parts.username or parts.password:
        raise AddressRefused("A webhook URL must not carry a user name or password; sign with the webhook secret.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("The webhook URL's port is not a number between 1 and 65535.") from None
    try:
        found = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except OSError:
        raise AddressRefused(f"The webhook host {parts.hostname!r} does not resolve.") from None
    for address in {info[4][0] for info in found}:
        _check_address(parts.hostname, ipaddress.ip_address(address.split("%")[0]))
    return url


def _check_address(host: str, address) -> None:
    if address.is_multicast or address.is_unspecified:
        raise AddressRefused(f"The webhook host {host!r} resolves to {address}, which cannot receive a webhook.")
    if address.is_global or settings.WEBHOOK_ALLOW_PRIVATE:
        return
    raise AddressRefused(
        f"The webhook host {host!r} resolves to {address}, a loopback, private or reserved address; "
        "webhooks go to public addresses only (an operator can allow others with DIFFPLATFORM_WEBHOOK_ALLOW_PRIVATE=1)."
    )
