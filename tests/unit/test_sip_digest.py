"""Digest authentication (RFC 2617, 7616, 8760) in routr_ray.sip.digest."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routr_ray.sip.digest import (
    NONCE_KEY_ENV,
    DigestAlgorithm,
    DigestAuthenticator,
    DigestChallenge,
    DigestParseError,
    DigestResult,
    NonceSigner,
    NonceStatus,
    NonceUses,
    answer_challenge,
    authorization_header_name,
    challenge_header_name,
    challenge_status,
    compute_ha1,
    compute_response,
    find_credentials,
    nonce_key_from_env,
    parse_auth_params,
    parse_authorization,
)

KEY = bytes(range(32))
REALM = "sip.local"
NOW = 1_700_000_000.0


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def client_header(
    *,
    username: str = "1001",
    realm: str = REALM,
    nonce: str,
    uri: str = "sip:sip.local",
    method: str = "REGISTER",
    password: str = "secret",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "6b8b4567",
    algorithm: str | None = "MD5",
    opaque: str | None = None,
    hash_hex=md5,
) -> str:
    """A SIPp-shaped header (auth.cpp order, no spaces after commas, nc/qop unquoted), computed here with
    hashlib so the module under test is not used to produce its own expectations."""
    ha1 = hash_hex(f"{username}:{realm}:{password}")
    ha2 = hash_hex(f"{method}:{uri}")
    parts = [f'Digest username="{username}"', f'realm="{realm}"']
    if qop:
        parts += [f'cnonce="{cnonce}"', f"nc={nc}", f"qop={qop}"]
        response = hash_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    else:
        response = hash_hex(f"{ha1}:{nonce}:{ha2}")
    parts += [f'uri="{uri}"', f'nonce="{nonce}"', f'response="{response}"']
    if algorithm:
        parts.append(f"algorithm={algorithm}")
    if opaque is not None:
        parts.append(f'opaque="{opaque}"')
    return ",".join(parts)


@pytest.fixture
def auth() -> DigestAuthenticator:
    return DigestAuthenticator(KEY)


def nonce_from(challenge_value: str) -> str:
    return parse_auth_params(challenge_value.split(" ", 1)[1])["nonce"]


# --- vectors ----------------------------------------------------------------------------------------


def test_rfc2617_section_3_5_vector() -> None:
    ha1 = compute_ha1(DigestAlgorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life")
    response = compute_response(
        DigestAlgorithm.MD5,
        ha1=ha1,
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


def test_rfc2617_vector_adapted_to_sip_with_our_nonce(auth: DigestAuthenticator) -> None:
    # The RFC's user, password and cnonce, with our realm and a nonce we issued.
    nonce = nonce_from(auth.challenge("testrealm@host.com", now=NOW)[0])
    header = client_header(
        username="Mufasa",
        password="Circle Of Life",
        realm="testrealm@host.com",
        nonce=nonce,
        uri="sip:testrealm@host.com",
        cnonce="0a4f113b",
        method="INVITE",
    )
    outcome = auth.verify(header, method="INVITE", realm="testrealm@host.com", password="Circle Of Life", now=NOW)
    assert outcome.result is DigestResult.OK
    assert outcome.username == "Mufasa"


def test_rfc7616_section_3_9_1_vectors() -> None:
    kwargs = dict(
        method="GET",
        uri="/dir/index.html",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    for alg, expected in (
        (DigestAlgorithm.MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (DigestAlgorithm.SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ):
        ha1 = compute_ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life")
        assert compute_response(alg, ha1=ha1, **kwargs) == expected


def test_sha256_vector_computed_independently() -> None:
    auth = DigestAuthenticator(KEY, algorithms=(DigestAlgorithm.SHA256, DigestAlgorithm.MD5))
    values = auth.challenge(REALM, now=NOW)
    assert [parse_auth_params(v.split(" ", 1)[1])["algorithm"] for v in values] == ["SHA-256", "MD5"]
    nonce = nonce_from(values[0])
    header = client_header(nonce=nonce, algorithm="SHA-256", hash_hex=sha256)
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).ok
    # The same credential hashed with MD5 but labelled SHA-256 fails.
    wrong = client_header(nonce=nonce, algorithm="SHA-256", hash_hex=md5)
    assert auth.verify(wrong, method="REGISTER", realm=REALM, password="secret", now=NOW).result is (
        DigestResult.BAD_PASSWORD
    )


def test_sha256_not_accepted_unless_enabled(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce, algorithm="SHA-256", hash_hex=sha256)
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).result is (
        DigestResult.UNSUPPORTED
    )


def test_md5_sess() -> None:
    auth = DigestAuthenticator(KEY, algorithms=(DigestAlgorithm.MD5_SESS,))
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    cnonce, nc = "abcdef01", "00000001"
    ha1 = md5(f"{md5('1001:sip.local:secret')}:{nonce}:{cnonce}")
    response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{md5('REGISTER:sip:sip.local')}")
    header = (
        f'Digest username="1001", realm="sip.local", nonce="{nonce}", uri="sip:sip.local", '
        f'response="{response}", algorithm=MD5-sess, qop=auth, nc={nc}, cnonce="{cnonce}"'
    )
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).ok


# --- challenges -------------------------------------------------------------------------------------


def test_default_challenge_is_md5_only_with_qop_auth(auth: DigestAuthenticator) -> None:
    values = auth.challenge(REALM, now=NOW)
    assert len(values) == 1
    assert values[0].startswith("Digest ")
    params = parse_auth_params(values[0][len("Digest ") :])
    assert params["realm"] == REALM
    assert params["algorithm"] == "MD5"
    assert params["qop"] == "auth"
    assert "stale" not in params
    assert "opaque" not in params
    assert auth.nonces.check(params["nonce"], REALM, now=NOW) is NonceStatus.VALID


def test_stale_challenge_and_opaque() -> None:
    auth = DigestAuthenticator(KEY, bind_opaque=True, random_bytes=lambda n: b"\x01" * n)
    params = parse_auth_params(auth.challenge(REALM, now=NOW, stale=True)[0][len("Digest ") :])
    assert params["stale"] == "true"
    assert params["opaque"] == "01" * 8
    # The nonce is bound to the opaque: without it (or with another one) it does not verify.
    assert auth.nonces.check(params["nonce"], REALM, now=NOW, opaque=params["opaque"]) is NonceStatus.VALID
    assert auth.nonces.check(params["nonce"], REALM, now=NOW) is NonceStatus.INVALID


def test_challenge_rendering_escapes_quotes() -> None:
    value = str(DigestChallenge(realm='a"b\\c', nonce="n", qop=None))
    assert value == 'Digest realm="a\\"b\\\\c", nonce="n", algorithm=MD5'
    assert parse_auth_params(value[len("Digest ") :])["realm"] == 'a"b\\c'


@pytest.mark.parametrize(
    ("method", "always_401", "expected"),
    [
        ("REGISTER", False, (401, "Unauthorized", "WWW-Authenticate")),
        ("INVITE", False, (407, "Proxy Authentication Required", "Proxy-Authenticate")),
        ("MESSAGE", True, (401, "Unauthorized", "WWW-Authenticate")),
    ],
)
def test_challenge_status(method: str, always_401: bool, expected: tuple[int, str, str]) -> None:
    assert challenge_status(method, always_401=always_401) == expected


def test_header_names() -> None:
    assert challenge_header_name(True) == "Proxy-Authenticate"
    assert challenge_header_name(False) == "WWW-Authenticate"
    assert authorization_header_name(True) == "Proxy-Authorization"
    assert authorization_header_name(False) == "Authorization"


# --- parsing ----------------------------------------------------------------------------------------


def test_parse_sipp_style_header() -> None:
    value = (
        'Digest username="1001",realm="sip.local",cnonce="6b8b4567",nc=00000001,qop=auth,'
        'uri="sip:sip.local:5060",nonce="abc",response="0123456789abcdef0123456789abcdef",algorithm=MD5'
    )
    creds = parse_authorization(value)
    assert (creds.username, creds.realm, creds.uri, creds.nonce) == ("1001", "sip.local", "sip:sip.local:5060", "abc")
    assert (creds.qop, creds.nc, creds.cnonce, creds.algorithm) == ("auth", "00000001", "6b8b4567", "MD5")
    assert creds.opaque is None


def test_parse_with_spaces_escapes_and_commas_in_quotes() -> None:
    value = (
        'digest  USERNAME = "a\\"b" ,realm="r,1", nonce="n", uri="sip:x;a=b,c", '
        'response="r", , opaque="", x-ext=tok'
    )
    creds = parse_authorization(value)
    assert creds.username == 'a"b'
    assert creds.realm == "r,1"
    assert creds.uri == "sip:x;a=b,c"
    assert creds.opaque == ""
    assert creds.params["x-ext"] == "tok"


def test_parse_username_star() -> None:
    value = "Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""
    assert parse_authorization(value).username == "Jäsøn Doe"


@pytest.mark.parametrize(
    "value",
    [
        'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==',
        'Digest realm="r", nonce="n", uri="u", response="x"',  # no username
        'Digest username="u", realm="r", nonce="n", uri="u"',  # no response
        'Digest username="u, realm="r", nonce="n", uri="u", response="x"',  # unterminated quote… swallows
        'Digest username="u", username="v", realm="r", nonce="n", uri="u", response="x"',
        'Digest username="u" realm="r", nonce="n", uri="u", response="x"',  # missing comma
        'Digest username, realm="r"',
        'Digest =x',
        "Digest",
        "",
    ],
)
def test_parse_rejects_malformed(value: str) -> None:
    with pytest.raises(DigestParseError):
        parse_authorization(value)


def test_verify_reports_malformed_for_unparsable_string(auth: DigestAuthenticator) -> None:
    outcome = auth.verify('Digest username="u"', method="REGISTER", realm=REALM, password="x", now=NOW)
    assert outcome.result is DigestResult.MALFORMED


def test_find_credentials_picks_our_realm() -> None:
    other = 'Digest username="a", realm="other.net", nonce="n", uri="u", response="x"'
    ours = 'Digest username="b", realm="sip.local", nonce="n", uri="u", response="x"'
    assert find_credentials([other, ours], REALM).username == "b"
    assert find_credentials([other], REALM).realm == "other.net"
    assert find_credentials([], REALM) is None
    assert find_credentials(["Digest broken", ours], REALM).username == "b"
    with pytest.raises(DigestParseError):
        find_credentials(["Digest broken"], REALM)


# --- verification -----------------------------------------------------------------------------------


def test_sipp_round_trip_ok(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce)
    outcome = auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW + 10)
    assert outcome.result is DigestResult.OK
    assert outcome.username == "1001"


def test_wrong_password(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce, password="guess")
    outcome = auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW)
    assert outcome.result is DigestResult.BAD_PASSWORD
    assert not outcome.stale


def test_wrong_method_fails(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce, method="INVITE")
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).result is (
        DigestResult.BAD_PASSWORD
    )


def test_ha2_uses_uri_from_header_not_request_uri(auth: DigestAuthenticator) -> None:
    # The client put a uri that differs from the Request-URI: still verified against its own uri.
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce, uri="sip:1001@sip.local;transport=ws")
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).ok


def test_stored_ha1_instead_of_password(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce)
    ha1 = md5("1001:sip.local:secret")
    assert auth.verify(header, method="REGISTER", realm=REALM, ha1=ha1, now=NOW).ok


def test_unknown_user(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    outcome = auth.verify(client_header(nonce=nonce), method="REGISTER", realm=REALM, now=NOW)
    assert outcome.result is DigestResult.UNKNOWN_USER
    assert outcome.username == "1001"


def test_no_qop_rfc2069_client(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce, qop=None, algorithm=None)
    assert "qop" not in header and "nc=" not in header
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).ok
    bad = client_header(nonce=nonce, qop=None, password="nope")
    assert auth.verify(bad, method="REGISTER", realm=REALM, password="secret", now=NOW).result is (
        DigestResult.BAD_PASSWORD
    )


def test_nonce_count_and_cnonce_enter_the_digest(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    # A later request reusing the nonce with nc=2 and a new cnonce is valid (the count is part of the hash).
    header = client_header(nonce=nonce, nc="00000002", cnonce="deadbeef")
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).ok
    # Tampering with nc or cnonce after hashing breaks the response.
    tampered_nc = header.replace("nc=00000002", "nc=00000003")
    tampered_cnonce = header.replace('cnonce="deadbeef"', 'cnonce="deadbeee"')
    for value in (tampered_nc, tampered_cnonce):
        outcome = auth.verify(value, method="REGISTER", realm=REALM, password="secret", now=NOW)
        assert outcome.result is DigestResult.BAD_PASSWORD


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda h: h.replace('cnonce="6b8b4567",', ""), DigestResult.MALFORMED),
        (lambda h: h.replace("nc=00000001,", ""), DigestResult.MALFORMED),
        (lambda h: h.replace("nc=00000001", "nc=1"), DigestResult.MALFORMED),
        (lambda h: h.replace("nc=00000001", "nc=0000000g"), DigestResult.MALFORMED),
        (lambda h: h.replace("qop=auth", "qop=auth-int"), DigestResult.UNSUPPORTED),
        (lambda h: h.replace("algorithm=MD5", "algorithm=AKAv1-MD5"), DigestResult.UNSUPPORTED),
    ],
)
def test_qop_parameter_rules(auth: DigestAuthenticator, edit, expected: DigestResult) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = edit(client_header(nonce=nonce))
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).result is expected


def test_algorithm_token_is_case_insensitive(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce, algorithm="md5")
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).ok


def test_response_hex_case_insensitive(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    creds = parse_authorization(client_header(nonce=nonce))
    upper = client_header(nonce=nonce).replace(creds.response, creds.response.upper())
    assert auth.verify(upper, method="REGISTER", realm=REALM, password="secret", now=NOW).ok


def test_realm_mismatch_never_trusts_client_realm(auth: DigestAuthenticator) -> None:
    # A nonce issued for evil.net and a digest computed over evil.net, presented to sip.local.
    nonce = nonce_from(auth.challenge("evil.net", now=NOW)[0])
    header = client_header(nonce=nonce, realm="evil.net")
    outcome = auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW)
    assert outcome.result is DigestResult.REALM_MISMATCH


def test_nonce_from_other_realm_is_invalid(auth: DigestAuthenticator) -> None:
    # The client claims our realm but replays a nonce issued for another realm.
    nonce = nonce_from(auth.challenge("other.net", now=NOW)[0])
    header = client_header(nonce=nonce)
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).result is (
        DigestResult.INVALID_NONCE
    )


def test_stale_nonce_with_right_password_is_stale(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce)
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW + 299).ok
    outcome = auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW + 301)
    assert outcome.result is DigestResult.STALE
    assert outcome.stale
    # The next challenge carries stale=true.
    assert "stale=true" in auth.challenge(REALM, now=NOW + 301, stale=outcome.stale)[0]


def test_stale_nonce_with_wrong_password_is_bad_password(auth: DigestAuthenticator) -> None:
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce, password="guess")
    outcome = auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW + 1000)
    assert outcome.result is DigestResult.BAD_PASSWORD


def test_configurable_ttl() -> None:
    auth = DigestAuthenticator(KEY, nonce_ttl=30)
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce)
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW + 29).ok
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW + 31).stale


def test_forged_and_garbled_nonces_are_invalid(auth: DigestAuthenticator) -> None:
    good = nonce_from(auth.challenge(REALM, now=NOW)[0])
    flipped = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    other_key = nonce_from(DigestAuthenticator(b"k" * 32).challenge(REALM, now=NOW)[0])
    for nonce in (flipped, other_key, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "", "!!!!", good + "AAAA", "é" * 40):
        header = client_header(nonce=nonce)
        outcome = auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW)
        assert outcome.result is DigestResult.INVALID_NONCE, nonce
        assert not outcome.stale


def test_replicas_sharing_a_key_verify_each_other() -> None:
    replica_a = DigestAuthenticator(KEY)
    replica_b = DigestAuthenticator(KEY)
    nonce = nonce_from(replica_a.challenge(REALM, now=NOW)[0])
    assert replica_b.verify(client_header(nonce=nonce), method="REGISTER", realm=REALM, password="secret", now=NOW).ok


def test_nonce_from_the_future_beyond_skew_is_stale() -> None:
    signer = NonceSigner(KEY, clock_skew=30)
    nonce = signer.issue(REALM, now=NOW + 60)
    assert signer.check(nonce, REALM, now=NOW + 40) is NonceStatus.VALID
    assert signer.check(nonce, REALM, now=NOW) is NonceStatus.STALE


def test_nonces_are_unique_and_quoted_string_safe() -> None:
    signer = NonceSigner(KEY)
    nonces = {signer.issue(REALM, now=NOW) for _ in range(50)}
    assert len(nonces) == 50
    assert all(n.isascii() and '"' not in n and "\\" not in n and "," not in n for n in nonces)


# --- keys -------------------------------------------------------------------------------------------


def test_nonce_key_from_env_hex_text_and_generated() -> None:
    assert nonce_key_from_env({NONCE_KEY_ENV: "00" * 32}) == bytes(32)
    assert nonce_key_from_env({NONCE_KEY_ENV: "a passphrase that is long enough"}) == (
        b"a passphrase that is long enough"
    )
    assert nonce_key_from_env({}, generate=lambda n: b"g" * n) == b"g" * 32
    assert len(nonce_key_from_env({})) == 32
    with pytest.raises(ValueError):
        nonce_key_from_env({NONCE_KEY_ENV: "short"})


def test_short_key_refused() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(b"short")


# --- properties -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('Digest usernamrlcoq=",\\ \t:é0123456789abcdef-*\''), max_size=120))
def test_garbage_never_raises_anything_but_parse_errors(value: str) -> None:
    try:
        parse_authorization(value)
    except DigestParseError:
        pass
    outcome = DigestAuthenticator(KEY).verify(value, method="REGISTER", realm=REALM, password="x", now=NOW)
    assert outcome.result is not DigestResult.OK


@settings(max_examples=200, deadline=None)
@given(realm=st.text(max_size=30), opaque=st.text(max_size=30))
def test_challenge_round_trips_through_the_parser(realm: str, opaque: str) -> None:
    value = str(DigestChallenge(realm=realm, nonce="n", opaque=opaque, stale=True))
    params = parse_auth_params(value[len("Digest ") :])
    assert params["realm"] == realm
    assert params["opaque"] == opaque
    assert params["stale"] == "true"


def test_non_utf8_bytes_kept_as_surrogates_are_hashed_as_sent(auth: DigestAuthenticator) -> None:
    # The SIP core keeps undecodable header bytes as surrogate escapes; the client hashed the raw bytes.
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    raw_user = b"j\xe9r\xf4me"
    user = raw_user.decode("utf-8", "surrogateescape")
    ha1 = hashlib.md5(raw_user + b":sip.local:secret").hexdigest()
    response = md5(f"{ha1}:{nonce}:{md5('REGISTER:sip:sip.local')}")
    header = f'Digest username="{user}", realm="sip.local", nonce="{nonce}", uri="sip:sip.local", response="{response}"'
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).ok
    opaque_header = header + f', opaque="{user}"'
    assert auth.verify(opaque_header, method="REGISTER", realm=REALM, password="secret", now=NOW).result is (
        DigestResult.INVALID_NONCE
    )


# --- client side: answering a challenge ----------------------------------------------------------


def test_answer_challenge_rfc2617_vector() -> None:
    challenge = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                 'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    value = answer_challenge(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                             password="Circle Of Life", cnonce="0a4f113b")
    assert value is not None
    params = parse_auth_params(value.split(" ", 1)[1])
    assert params["response"] == "6629fae49393a05397450978507c4ef1"  # RFC 2617 §3.5
    assert params["qop"] == "auth" and params["nc"] == "00000001"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


@pytest.mark.parametrize("algorithm", [DigestAlgorithm.MD5, DigestAlgorithm.SHA256])
def test_answer_challenge_verifies_against_our_own_server(algorithm: DigestAlgorithm) -> None:
    server = DigestAuthenticator(KEY, algorithms=(algorithm,), bind_opaque=True)
    [challenge] = server.challenge(REALM, now=NOW)
    value = answer_challenge(challenge, method="INVITE", uri="sip:+15551234@trunk.example", username="pbx-1",
                             password="1234")
    assert value is not None
    assert server.verify(value, method="INVITE", realm=REALM, password="1234", now=NOW).ok
    assert not server.verify(value, method="INVITE", realm=REALM, password="4321", now=NOW).ok


def test_answer_challenge_without_qop_uses_rfc2069() -> None:
    value = answer_challenge('Digest realm="r", nonce="n"', method="INVITE", uri="sip:a@b", username="u",
                             password="p")
    assert value is not None
    params = parse_auth_params(value.split(" ", 1)[1])
    ha1 = md5("u:r:p")
    assert params["response"] == md5(f"{ha1}:n:{md5('INVITE:sip:a@b')}")
    assert "qop" not in params and "cnonce" not in params


@pytest.mark.parametrize("challenge", [
    'Basic realm="r"',  # not Digest
    'Digest realm="r", nonce="n", qop="auth-int"',  # auth-int only
    'Digest realm="r", nonce="n", algorithm=SHA-512-256',  # unknown algorithm
    'Digest nonce="n"',  # no realm
    'Digest realm="r, nonce="n"',  # malformed
])
def test_challenges_we_cannot_answer(challenge: str) -> None:
    assert answer_challenge(challenge, method="INVITE", uri="sip:a@b", username="u", password="p") is None


# --- replays: nonces bound to an address, nonce-counts used once (issue 14 item 4) ----------------------------


def test_a_nonce_is_good_only_where_it_was_bound() -> None:
    auth = DigestAuthenticator(KEY)
    nonce = nonce_from(auth.challenge(REALM, now=NOW, bound="10.0.0.5")[0])
    header = client_header(nonce=nonce)
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW, bound="10.0.0.5").ok
    other = auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW, bound="192.0.2.66")
    assert other.result is DigestResult.INVALID_NONCE and not other.stale
    unbound = auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW)
    assert unbound.result is DigestResult.INVALID_NONCE


def test_a_nonce_count_is_accepted_once() -> None:
    auth = DigestAuthenticator(KEY, nonce_uses=NonceUses())
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])

    def verify(nc: str, qop: str | None = "auth") -> DigestResult:
        header = client_header(nonce=nonce, nc=nc, qop=qop)
        return auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).result

    assert verify("00000001") is DigestResult.OK
    replay = auth.verify(client_header(nonce=nonce), method="REGISTER", realm=REALM, password="secret", now=NOW)
    assert replay.result is DigestResult.REPLAY and replay.stale  # the next challenge says stale=true
    assert verify("00000003") is DigestResult.OK  # a client reusing the nonce counts up
    assert verify("00000002") is DigestResult.OK  # reordered (UDP): still once
    assert verify("00000002") is DigestResult.REPLAY
    assert verify("00000003") is DigestResult.REPLAY
    # a wrong response never records a count: it cannot burn the client's next one
    bad = client_header(nonce=nonce, nc="00000004", password="wrong")
    assert auth.verify(bad, method="REGISTER", realm=REALM, password="secret", now=NOW).result is (
        DigestResult.BAD_PASSWORD)
    assert verify("00000004") is DigestResult.OK


def test_without_qop_a_nonce_is_good_for_one_request() -> None:
    auth = DigestAuthenticator(KEY, nonce_uses=NonceUses())
    nonce = nonce_from(auth.challenge(REALM, now=NOW)[0])
    header = client_header(nonce=nonce, qop=None)
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).ok
    assert auth.verify(header, method="REGISTER", realm=REALM, password="secret", now=NOW).result is (
        DigestResult.REPLAY)


def test_nonce_uses_window_and_bound() -> None:
    uses = NonceUses(max_nonces=2)
    assert uses.accept("a", 1, 10.0) and not uses.accept("a", 1, 10.0)
    assert uses.accept("a", 100, 10.0) and uses.accept("a", 37, 10.0) and not uses.accept("a", 36, 10.0)  # window
    assert uses.accept("b", 1, 20.0) and uses.accept("c", 1, 30.0)  # "a" (issued at 10) evicted
    assert len(uses) == 2
    assert not uses.accept("a", 101, 10.0)  # evicted: may have been used, refused (costs one stale challenge)
    assert not uses.accept("old", 1, 9.0)  # issued before the eviction horizon, never seen: refused too
    assert uses.accept("new", 1, 31.0)
    with pytest.raises(ValueError):
        NonceUses(max_nonces=0)


def test_algorithms_per_call_override_the_default() -> None:
    auth = DigestAuthenticator(KEY)  # default MD5
    values = auth.challenge(REALM, now=NOW, algorithms=(DigestAlgorithm.SHA256,))
    assert len(values) == 1 and "algorithm=SHA-256" in values[0]
    nonce = nonce_from(values[0])
    sha = client_header(nonce=nonce, algorithm="SHA-256", hash_hex=sha256)
    only_sha = (DigestAlgorithm.SHA256,)
    assert auth.verify(sha, method="REGISTER", realm=REALM, password="secret", now=NOW, algorithms=only_sha).ok
    md = client_header(nonce=nonce)
    assert auth.verify(md, method="REGISTER", realm=REALM, password="secret", now=NOW,
                       algorithms=only_sha).result is DigestResult.UNSUPPORTED
