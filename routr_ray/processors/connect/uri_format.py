"""The user part of a Request-URI toward a Trunk, in the format the Trunk asks for (``spec.outbound.uriFormat``,
a routr-ray extension; docs/trunks.md "Request-URI formats").

* ``dialled`` (the default): the user as dialled.
* ``e164``: ``+`` and the digits of the dialled number (RFC 3966 visual separators ``-``, ``.``, ``(``, ``)`` and
  spaces removed, a leading ``+`` kept once), with ``;user=phone`` on the URI: RFC 3261 §19.1.6 says a SIP URI
  whose user part is a telephone number carries ``user=phone``. E.164 numbers are at most 15 digits (ITU-T E.164
  §6.1); a dialled user that is anything else (letters, ``*``, ``#``, too long, empty) is no E.164 number and the
  call is refused with 484 Address Incomplete (RFC 3261 §21.4.22) instead of being sent in a form the provider
  did not ask for. The number must carry its country code: no national prefix is guessed.
"""

from __future__ import annotations

from routr_ray.config.resources import UriFormat

__all__ = ["E164_MAX_DIGITS", "e164", "request_user"]

E164_MAX_DIGITS = 15
VISUAL_SEPARATORS = frozenset("-.() ")  # RFC 3966 §3 visual-separator (and the space people type)
_DIGITS = frozenset("0123456789")


def e164(dialled: str) -> str | None:
    """``+<digits>`` of ``dialled``; None when it is no E.164 number."""
    text = dialled.strip()
    if text.startswith("+"):
        text = text[1:]
    digits = "".join(c for c in text if c not in VISUAL_SEPARATORS)
    if not digits or len(digits) > E164_MAX_DIGITS or not set(digits) <= _DIGITS:
        return None
    return "+" + digits


def request_user(dialled: str, uri_format: UriFormat) -> tuple[str, bool] | None:
    """(user part, whether the URI gets ``user=phone``) for ``uri_format``; None when the dialled user cannot be
    written that way."""
    if uri_format is UriFormat.E164:
        number = e164(dialled)
        return (number, True) if number is not None else None
    return dialled, False
