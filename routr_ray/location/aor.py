"""Address-of-record validation and canonical form.

RFC 3261 §10.3 (step 5): the registrar converts the AOR to a canonical form before it indexes
bindings: "all URI parameters MUST be removed (including the user-param), and any escaped
characters MUST be converted to their unescaped form". We also lower-case the scheme and the host
(RFC 3261 §19.1.4: scheme and host compare case-insensitively, the user part case-sensitively), drop
any password and `?headers`, and keep an explicit port. `backend:<ref>` AORs (Routr's load-balanced
peers) keep their reference verbatim apart from surrounding blanks and parameters.
"""

from __future__ import annotations

from urllib.parse import unquote

from routr_ray.location.errors import invalid_argument

SIP_SCHEMES = ("sip", "sips")
BACKEND_SCHEME = "backend"
MAX_AOR_LENGTH = 1024


def normalize_aor(aor: str) -> str:
    """Return the canonical AOR, or raise LocationError(INVALID_ARGUMENT) saying what is wrong."""
    if not isinstance(aor, str) or not aor.strip():
        raise invalid_argument("AOR is empty; expected sip:user@host, sips:user@host or backend:<ref>")
    text = aor.strip()
    if len(text) > MAX_AOR_LENGTH:
        raise invalid_argument(f"AOR is longer than {MAX_AOR_LENGTH} characters")
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in (*SIP_SCHEMES, BACKEND_SCHEME):
        raise invalid_argument(
            f"unsupported AOR scheme in {_shown(text)}: expected sip:, sips: or backend:"
        )
    if scheme == BACKEND_SCHEME:
        ref = rest.split(";", 1)[0].strip()
        if not ref:
            raise invalid_argument(f"backend AOR {_shown(text)} has no reference")
        return f"{BACKEND_SCHEME}:{ref}"
    return f"{scheme}:{_canonical_sip_rest(rest, text)}"


def aor_domain(aor: str) -> str:
    """The domain of a canonical AOR (``sip:1001@sip.local`` -> ``sip.local``, port and parameters dropped);
    ``backend`` for a backend AOR."""
    scheme, _, rest = aor.partition(":")
    if scheme == BACKEND_SCHEME:
        return BACKEND_SCHEME
    hostport = rest.rpartition("@")[2].split(";", 1)[0]
    if hostport.startswith("["):
        return hostport.partition("]")[0] + "]"
    return hostport.partition(":")[0]


def _canonical_sip_rest(rest: str, original: str) -> str:
    rest = rest.split("?", 1)[0]  # RFC 3261 §19.1.1: headers come after '?'
    userinfo, at, hostport = rest.rpartition("@")
    if not at:
        userinfo, hostport = "", rest
    user = unquote(userinfo.split(":", 1)[0])  # drop a password (user:password@host)
    hostport = hostport.split(";", 1)[0]  # URI parameters
    host, port = _split_hostport(hostport, original)
    if at and not user:
        raise invalid_argument(f"AOR {_shown(original)} has an empty user part")
    if any(c.isspace() for c in user):
        raise invalid_argument(f"AOR {_shown(original)} has blanks in the user part")
    target = f"{host}:{port}" if port else host
    return f"{user}@{target}" if user else target


def _split_hostport(hostport: str, original: str) -> tuple[str, str]:
    hostport = hostport.strip()
    if hostport.startswith("["):  # IPv6 reference, RFC 3261 §25.1
        end = hostport.find("]")
        if end < 0:
            raise invalid_argument(f"AOR {_shown(original)} has an unterminated IPv6 host")
        host, tail = hostport[: end + 1], hostport[end + 1 :]
        port = tail[1:] if tail.startswith(":") else ""
        if tail and not tail.startswith(":"):
            raise invalid_argument(f"AOR {_shown(original)} has junk after the IPv6 host")
    else:
        host, _, port = hostport.partition(":")
    host = host.lower()
    if not host or any(c.isspace() or c in "@<>\"" for c in host):
        raise invalid_argument(f"AOR {_shown(original)} has no valid host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise invalid_argument(f"AOR {_shown(original)} has an invalid port {port!r}")
    return host, port


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")
