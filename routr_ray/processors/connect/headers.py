"""Identity and privacy headers toward a trunk (RFC 3323 Privacy, RFC 3325 P-Asserted-Identity, and the
Remote-Party-ID draft many carriers still read), and other header rules of Connect.

Routr compares the privacy setting with "ID" after upper-casing `Private`, so it always sends
`Privacy: none` (routr.md §3.5, §12). Here PRIVATE means `Privacy: id` (RFC 3323 §4.2), RPID `privacy=full`,
and an anonymous From toward the trunk (RFC 3323 §4.1.1.3: "Anonymous" <sip:anonymous@anonymous.invalid>),
while the asserted identity (the DID) is still given to the trusted trunk (RFC 3325 §9.1).
"""

from __future__ import annotations

from routr_ray.sip.uri import URI, format_host

ANONYMOUS_FROM_URI = URI("sip", "anonymous", "anonymous.invalid")
ANONYMOUS_DISPLAY = "Anonymous"

# Identity headers a caller may have written itself: never forwarded as they came (RFC 3325 §5: a proxy
# removes P-Asserted-Identity it did not assert); Connect writes its own.
IDENTITY_HEADERS = ("Privacy", "P-Asserted-Identity", "P-Preferred-Identity", "Remote-Party-ID")
# Headers meaningful only between Connect and its EdgePorts/peers; a client's copy is removed.
INTERNAL_HEADERS = ("X-Call-Direction", "X-Gateway-Auth", "X-Edgeport-Ref")
DOD_HEADERS = ("X-DOD-Number", "X-DOD-Privacy")


def quote_display(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def number_of(tel_url: str) -> str:
    return tel_url[4:] if tel_url.startswith("tel:") else tel_url


def pstn_identity_headers(
    tel_url: str, trunk_host: str, *, display_name: str | None, private: bool
) -> list[tuple[str, str]]:
    """Privacy, P-Asserted-Identity and Remote-Party-ID for a call that leaves through a trunk as `tel_url`."""
    number = number_of(tel_url)
    host = format_host(trunk_host)
    display = f"{quote_display(display_name)} " if display_name and not private else ""
    return [
        ("Privacy", "id" if private else "none"),
        ("P-Asserted-Identity", f"{display}<sip:{number}@{host};user=phone>"),
        ("Remote-Party-ID", f"{display}<sip:{number}@{host}>;party=calling;screen=yes;"
                            f"privacy={'full' if private else 'off'}"),
    ]


def is_private(value: str | None) -> bool:
    """An X-DOD-Privacy / Privacy-like setting asking to hide the caller (`private`, `id`, `full`)."""
    return (value or "").strip().lower() in ("private", "id", "full", "user", "header")
