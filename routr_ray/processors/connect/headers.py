"""Identity and privacy headers (RFC 3323 Privacy, RFC 3325 P-Asserted-Identity, and the Remote-Party-ID draft
many carriers still read), and other header rules of Connect.

Trust domain (RFC 3325 §2.3, §5): Connect and the Peers/Trunks marked `trustAssertedIdentity` form it. An identity
a client writes is not an identity: P-Asserted-Identity and Remote-Party-ID from anyone outside are removed
(`identity_headers_to_remove`), P-Preferred-Identity (a UA's wish to its trusted proxy, §9.2) never leaves
Connect, and toward the PSTN Connect asserts the caller's Number itself (`pstn_identity_headers`).

Routr compares the privacy setting with "ID" after upper-casing `Private`, so it always sends
`Privacy: none` (routr.md §3.5, §12). Here PRIVATE means `Privacy: id` (RFC 3323 §4.2), RPID `privacy=full`,
and an anonymous From toward the trunk (RFC 3323 §4.1.1.3: "Anonymous" <sip:anonymous@anonymous.invalid>),
while the asserted identity (the DID) is still given to the trusted trunk (RFC 3325 §9.1).
"""

from __future__ import annotations

from routr_ray.sip.message import Request
from routr_ray.sip.uri import URI, format_host

ANONYMOUS_FROM_URI = URI("sip", "anonymous", "anonymous.invalid")
ANONYMOUS_DISPLAY = "Anonymous"

# Identity headers a caller may have written itself: never forwarded as they came (RFC 3325 §5: a proxy
# removes P-Asserted-Identity it did not assert); Connect writes its own.
IDENTITY_HEADERS = ("Privacy", "P-Asserted-Identity", "P-Preferred-Identity", "Remote-Party-ID")
# Headers meaningful only between Connect and its EdgePorts/peers; a client's copy is removed. X-Connect-Token is a
# web agent's bearer credential (web_agents.py): whoever receives it could act as that agent until it expires, so it
# never leaves Connect, in-dialog requests included.
INTERNAL_HEADERS = ("X-Call-Direction", "X-Gateway-Auth", "X-Edgeport-Ref", "X-Connect-Token")
DOD_HEADERS = ("X-DOD-Number", "X-DOD-Privacy")
ASSERTED_IDENTITY_HEADERS = ("P-Asserted-Identity", "Remote-Party-ID")
PREFERRED_IDENTITY_HEADER = "P-Preferred-Identity"


def privacy_asks_for_id(values: list[str]) -> bool:
    """A `Privacy` header asking to withhold the asserted identity (RFC 3325 §9.3 `id`; RFC 3323 §4.2 `header`
    asks no less). Values are `priv-value *(";" priv-value)`, possibly in several header values."""
    for value in values:
        for item in value.replace(",", ";").split(";"):
            if item.strip().lower() in ("id", "header"):
                return True
    return False


def identity_headers_to_remove(request: Request, *, sender_trusted: bool, receiver_trusted: bool) -> list[str]:
    """The identity headers a request loses on its way through Connect (RFC 3325 §5, §7, §9.2):

    * P-Preferred-Identity always (only a trusted proxy reads it, and the asserted identity is Connect's call);
    * P-Asserted-Identity and Remote-Party-ID when the sender is not trusted, and when it is but the request
      asks for privacy and goes to a party outside the trust domain (an Agent)."""
    remove = [PREFERRED_IDENTITY_HEADER]
    if not sender_trusted or (not receiver_trusted and privacy_asks_for_id(request.headers.get_all("Privacy"))):
        remove.extend(ASSERTED_IDENTITY_HEADERS)
    return remove


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
