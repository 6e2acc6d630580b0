"""Connect resources: Routr's examples, each kind's errors, and the checks across a set."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest

from routr_ray.config import (
    AccessControlList,
    Agent,
    BalancingAlgorithm,
    Credentials,
    Domain,
    EgressPolicy,
    ExtraHeader,
    GeoInfo,
    Keepalive,
    LoadBalancing,
    Number,
    Peer,
    Privacy,
    Trunk,
    TrunkInbound,
    TrunkOutbound,
    TrunkUri,
    UriFormat,
    load_resources,
    validate_paths,
)

ROUTR_RESOURCES = Path(__file__).resolve().parents[2] / "tests" / "data" / "config" / "routr" / "resources"


@pytest.fixture
def routr_set(tmp_path: Path) -> Path:
    """A copy of Routr's example resources that a test may break."""
    directory = tmp_path / "resources"
    shutil.copytree(ROUTR_RESOURCES, directory)
    return directory


def edit(directory: Path, file: str, old: str, new: str) -> None:
    path = directory / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new))


def errors_of(directory: Path) -> set[tuple[str, str, str]]:
    return {(Path(e.file).name, e.pointer, e.reason) for e in validate_paths([str(directory)])}


# --- Routr's examples, unchanged -----------------------------------------------------------------------


def test_routr_examples_load_with_every_field() -> None:
    resources = load_resources(ROUTR_RESOURCES)
    assert resources.agents == (
        Agent("agent-01", "John Doe", "1001", "domain-01", "credentials-01", privacy=Privacy.PRIVATE),
    )
    assert resources.peers == (
        Peer(
            "peer-01",
            "Asterisk (Media Server)",
            username="asterisk",
            aor="sip:conference@sip.local",
            credentials_ref="credentials-03",
            load_balancing=LoadBalancing(BalancingAlgorithm.LEAST_SESSIONS, with_session_affinity=True),
        ),
    )
    assert resources.domains == (
        Domain("domain-01", "Local Domain", "sip.local", "acl-01", (EgressPolicy(".*", "number-01"),)),
    )
    assert resources.numbers == (
        Number(
            "number-01",
            "(706)604-1487",
            tel_url="tel:+17066041487",
            trunk_ref="trunk-01",
            aor_link="sip:conference@sip.local",
            session_affinity_header="X-Room-Id",
            extra_headers=(ExtraHeader("X-Room-Id", "jsa-shqm-iyo"),),
            geo_info=GeoInfo("Columbus, GA", "USA", "US"),
        ),
    )
    assert resources.trunks == (
        Trunk(
            "trunk-01",
            "Test Trunk",
            inbound=TrunkInbound("trunk01.acme.com", access_control_list_ref="acl-01"),
            outbound=TrunkOutbound(
                uris=(TrunkUri("sip.provider.net", 7060, "udp", user="pbx-1", priority=10, weight=10),),
                send_register=True,
                credentials_ref="credentials-04",
            ),
            region="us-east1",
        ),
    )
    assert resources.access_control_lists == (
        AccessControlList(
            "acl-01",
            "Europe ACL",
            allow=tuple(
                ipaddress.ip_network(n, strict=False)
                for n in ("192.168.1.3/31", "127.0.0.1/8", "10.111.221.22/31")
            ),
            deny=(ipaddress.ip_network("0.0.0.0/1"),),
        ),
    )
    assert [c.ref for c in resources.credentials] == ["credentials-01", "credentials-03", "credentials-04"]
    assert "1234" not in repr(resources.credentials)


def test_lookups() -> None:
    resources = load_resources(ROUTR_RESOURCES)
    assert resources.get(Domain, "domain-01") is resources.domains[0]
    assert resources.get(Credentials, "domain-01") is None  # wrong kind
    assert resources.get(Agent, None) is None
    assert resources.agent("1001", "SIP.LOCAL") is resources.agents[0]
    assert resources.agent("1001", "other.domain") is None
    assert resources.peer_by_username("asterisk") is resources.peers[0]
    assert resources.number_by_tel_url("tel:+17066041487") is resources.numbers[0]
    assert resources.trunk_by_inbound_uri("trunk01.acme.com") is resources.trunks[0]
    assert resources.domain_by_uri("sip.local") is resources.domains[0]


def test_routr_examples_are_valid_in_the_alternative_spellings_routr_accepts(routr_set: Path) -> None:
    edit(routr_set, "agents.yaml", "privacy: Private", "privacy: none")
    edit(routr_set, "peers.yaml", "kind: Peer", "kind: peer")
    edit(routr_set, "trunks.yaml", "transport: udp", "transport: TCP")
    # Routr's schema puts the ACL ref under spec.context.
    edit(
        routr_set,
        "domains.yaml",
        "    accessControlListRef: acl-01\n    context:\n",
        "    context:\n      accessControlListRef: acl-01\n",
    )
    resources = load_resources(routr_set)
    assert resources.agents[0].privacy is Privacy.NONE
    assert (
        resources.trunks[0].outbound is not None and resources.trunks[0].outbound.uris[0].transport == "tcp"
    )
    assert resources.domains[0].access_control_list_ref == "acl-01"


# --- per kind: bad type, missing required, dangling ref ------------------------------------------------

CASES = [
    # Agent
    ("agents.yaml", 'username: "1001"', "username: 1001", "/0/spec/username",
     "expected a string, got the number 1001 (quote it in YAML)"),
    ("agents.yaml", 'username: "1001", ', "", "/0/spec/username", "required field is missing"),
    ("agents.yaml", "domainRef: domain-01", "domainRef: domain-02", "/0/spec/domainRef",
     "dangling ref: there is no Domain with ref 'domain-02'"),
    ("agents.yaml", "privacy: Private", "privacy: Secret", "/0/spec/privacy",
     "must be one of PRIVATE, NONE, Private, None, private, none; got the string 'Secret'"),
    # Peer
    ("peers.yaml", "withSessionAffinity: true", "withSessionAffinity: 1", "/0/spec/loadBalancing/withSessionAffinity",
     "expected true or false, got the number 1"),
    ("peers.yaml", "    aor: sip:conference@sip.local\n", "", "/0/spec/aor", "required field is missing"),
    ("peers.yaml", "aor: sip:conference@sip.local", "aor: conference@sip.local", "/0/spec/aor",
     "expected an AOR starting with sip:, sips: or backend:; got the string 'conference@sip.local'"),
    ("peers.yaml", "credentialsRef: credentials-03", "credentialsRef: credentials-09", "/0/spec/credentialsRef",
     "dangling ref: there is no Credentials with ref 'credentials-09'"),
    # Domain
    ("domains.yaml", "domainUri: sip.local", "domainUri: [sip.local]", "/0/spec/context/domainUri",
     "expected a string, got a list"),
    ("domains.yaml", "      domainUri: sip.local\n", "", "/0/spec/context/domainUri", "required field is missing"),
    ("domains.yaml", "numberRef: number-01", "numberRef: number-02", "/0/spec/context/egressPolicies/0/numberRef",
     "dangling ref: there is no Number with ref 'number-02'"),
    ("domains.yaml", "accessControlListRef: acl-01", "accessControlListRef: acl-02", "/0/spec/accessControlListRef",
     "dangling ref: there is no AccessControlList with ref 'acl-02'"),
    ("domains.yaml", 'rule: ".*"', 'rule: "(+"', "/0/spec/context/egressPolicies/0/rule",
     "not a valid regular expression: nothing to repeat at position 1"),
    # Number
    ("numbers.yaml", "extraHeaders: [{ name: X-Room-Id, value: jsa-shqm-iyo }]", "extraHeaders: X-Room-Id",
     "/0/spec/location/extraHeaders", "expected a list, got the string 'X-Room-Id'"),
    ("numbers.yaml", "      telUrl: tel:+17066041487\n", "", "/0/spec/location/telUrl", "required field is missing"),
    ("numbers.yaml", "trunkRef: trunk-01", "trunkRef: trunk-02", "/0/spec/trunkRef",
     "dangling ref: there is no Trunk with ref 'trunk-02'"),
    ("numbers.yaml", "telUrl: tel:+17066041487", "telUrl: '+17066041487'", "/0/spec/location/telUrl",
     "expected a tel: URL such as tel:+17066041487; got the string '+17066041487'"),
    # Trunk
    ("trunks.yaml", "port: 7060", "port: seven", "/0/spec/outbound/uris/0/uri/port",
     "expected an integer, got the string 'seven'"),
    ("trunks.yaml", "host: sip.provider.net, ", "", "/0/spec/outbound/uris/0/uri/host", "required field is missing"),
    ("trunks.yaml", "credentialsRef: credentials-04", "credentialsRef: credentials-05", "/0/spec/outbound/credentialsRef",
     "dangling ref: there is no Credentials with ref 'credentials-05'"),
    ("trunks.yaml", "{ uri: trunk01.acme.com, accessControlListRef: acl-01 }",
     "{ uri: trunk01.acme.com, accessControlListRef: acl-01, credentialsRef: nope }",
     "/0/spec/inbound/credentialsRef", "dangling ref: there is no Credentials with ref 'nope'"),
    ("trunks.yaml", "weight: 10", "weight: 0", "/0/spec/outbound/uris/0/weight", "0 is less than the minimum of 1"),
    # Credentials
    ("credentials.yaml", 'password: "1234"', "password: 1234", "/0/spec/credentials/password",
     "expected a string, got the number 1234 (quote it in YAML)"),
    ("credentials.yaml", ', password: "1234"', "", "/0/spec/credentials/password", "required field is missing"),
    # AccessControlList
    ("acls.yaml", "deny: [0.0.0.0/1]", "deny: 0.0.0.0/1", "/0/spec/accessControlList/deny",
     "expected a list, got the string '0.0.0.0/1'"),
    ("acls.yaml", "127.0.0.1/8", "127.0.0.300/8", "/0/spec/accessControlList/allow/1",
     "expected an IP address or network such as 10.0.0.0/8; got '127.0.0.300/8'"),
    ("acls.yaml", "spec: { accessControlList:", "spec: { acl:", "/0/spec/accessControlList", "required field is missing"),
    # the envelope
    ("agents.yaml", "domainRef: domain-01", "domainRef: domain 01", "/0/spec/domainRef",
     "expected a ref: a non-empty name without spaces; got the string 'domain 01'"),
    ("acls.yaml", "metadata: { name: Europe ACL }", "metadata: {}", "/0/metadata/name", "required field is missing"),
    ("acls.yaml", "apiVersion: v2beta1", "apiVersion: v1", "/0/apiVersion",
     "must be one of v2beta1, v2, v2draft1, v2.0; got the string 'v1'"),
]  # fmt: skip


@pytest.mark.parametrize(("file", "old", "new", "pointer", "reason"), CASES)
def test_each_kind_rejects_with_file_pointer_and_reason(
    routr_set: Path, file: str, old: str, new: str, pointer: str, reason: str
) -> None:
    edit(routr_set, file, old, new)
    assert errors_of(routr_set) == {(file, pointer, reason)}


def test_a_document_that_fails_its_schema_still_owns_its_ref(routr_set: Path) -> None:
    # The broken Domain is reported once; the Agent that names it gets no second, dangling-ref error.
    edit(routr_set, "domains.yaml", "domainUri: sip.local", "domainUri: 5")
    assert errors_of(routr_set) == {
        (
            "domains.yaml",
            "/0/spec/context/domainUri",
            "expected a string, got the number 5 (quote it in YAML)",
        )
    }


def test_ref_to_the_wrong_kind(routr_set: Path) -> None:
    edit(routr_set, "agents.yaml", "credentialsRef: credentials-01", "credentialsRef: acl-01")
    assert errors_of(routr_set) == {
        (
            "agents.yaml",
            "/0/spec/credentialsRef",
            "ref 'acl-01' names an AccessControlList, expected a Credentials",
        )
    }


def test_duplicate_refs_across_kinds_and_files(routr_set: Path) -> None:
    edit(routr_set, "supplement.yaml", "ref: credentials-04", "ref: peer-01")
    errors = errors_of(routr_set)
    assert (
        "supplement.yaml",
        "/1/ref",
        f"duplicate ref 'peer-01': already used by the Peer at {routr_set / 'peers.yaml'}: /0",
    ) in errors
    # ... and the trunk's ref to credentials-04 now dangles.
    assert ("trunks.yaml", "/0/spec/outbound/credentialsRef",
            "dangling ref: there is no Credentials with ref 'credentials-04'") in errors  # fmt: skip
    assert len(errors) == 2


def test_values_that_must_be_unique(routr_set: Path) -> None:
    (routr_set / "zz-extra.yaml").write_text(
        """\
- apiVersion: v2beta1
  kind: Domain
  ref: domain-02
  metadata: { name: Same domain again }
  spec: { context: { domainUri: SIP.LOCAL } }
- apiVersion: v2beta1
  kind: Agent
  ref: agent-02
  metadata: { name: John again }
  spec: { username: "1001", domainRef: domain-01, credentialsRef: credentials-01 }
- apiVersion: v2beta1
  kind: Agent
  ref: agent-03
  metadata: { name: John in another domain }
  spec: { username: "1001", domainRef: domain-02, credentialsRef: credentials-01 }
- apiVersion: v2beta1
  kind: Number
  ref: number-02
  metadata: { name: Same number }
  spec: { trunkRef: trunk-01, location: { telUrl: "tel:+17066041487" } }
- apiVersion: v2beta1
  kind: Trunk
  ref: trunk-02
  metadata: { name: Same inbound uri }
  spec: { inbound: { uri: trunk01.acme.com } }
- apiVersion: v2beta1
  kind: Peer
  ref: peer-02
  metadata: { name: Same username }
  spec: { aor: "sip:voice@sip.local", username: asterisk }
"""
    )

    def first(file: str, pointer: str) -> str:
        return f"{routr_set / file}: {pointer}"

    assert errors_of(routr_set) == {
        ("zz-extra.yaml", "/0/spec/context/domainUri",
         f"duplicate domainUri: already used by the Domain 'domain-01' at {first('domains.yaml', '/0/spec/context/domainUri')}"),
        ("zz-extra.yaml", "/1/spec/username",
         f"duplicate username in its domain: already used by the Agent 'agent-01' at {first('agents.yaml', '/0/spec/username')}"),
        ("zz-extra.yaml", "/3/spec/location/telUrl",
         f"duplicate telUrl: already used by the Number 'number-01' at {first('numbers.yaml', '/0/spec/location/telUrl')}"),
        ("zz-extra.yaml", "/4/spec/inbound/uri",
         f"duplicate trunk inbound uri: already used by the Trunk 'trunk-01' at {first('trunks.yaml', '/0/spec/inbound/uri')}"),
        ("zz-extra.yaml", "/5/spec/username",
         f"duplicate peer username: already used by the Peer 'peer-01' at {first('peers.yaml', '/0/spec/username')}"),
    }  # fmt: skip


def test_a_single_object_file_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "apiVersion: v2beta1\nkind: Credentials\nref: c1\nmetadata: {name: n}\n"
        "spec: {credentials: {username: u, password: p}}\n"
    )
    assert load_resources(tmp_path).credentials[0].ref == "c1"


def test_routr_ray_security_extensions(routr_set: Path) -> None:
    """issue 14: `trustAssertedIdentity` (Peer, Trunk; RFC 3325 trust domain) and a Domain's `digestAlgorithms`."""
    edit(routr_set, "peers.yaml", "    username: asterisk\n", "    username: asterisk\n    trustAssertedIdentity: true\n")
    edit(routr_set, "trunks.yaml", "    inbound: {", "    trustAssertedIdentity: true\n    inbound: {")
    edit(routr_set, "domains.yaml", "    context:\n", "    digestAlgorithms: [SHA-256, MD5]\n    context:\n")
    resources = load_resources(routr_set)
    assert resources.peers[0].trust_asserted_identity and resources.trunks[0].trust_asserted_identity
    assert resources.domains[0].digest_algorithms == ("SHA-256", "MD5")
    assert not load_resources(ROUTR_RESOURCES).peers[0].trust_asserted_identity  # off unless asked for
    edit(routr_set, "domains.yaml", "[SHA-256, MD5]", "[SHA-512]")
    edit(routr_set, "peers.yaml", "trustAssertedIdentity: true", "trustAssertedIdentity: yes please")
    assert {(f, p) for f, p, _ in errors_of(routr_set)} == {
        ("domains.yaml", "/0/spec/digestAlgorithms/0"), ("peers.yaml", "/0/spec/trustAssertedIdentity")}


def test_routr_ray_trunk_extensions(routr_set: Path) -> None:
    """issue 15: a Trunk's `uriFormat` and the `keepalive` of Trunks and Peers (OPTIONS pings)."""
    edit(routr_set, "trunks.yaml", "      sendRegister: true\n",
         "      sendRegister: true\n      uriFormat: e164\n      keepalive: { interval: 10, failuresBeforeDown: 3 }\n")
    edit(routr_set, "peers.yaml", "    username: asterisk\n",
         "    username: asterisk\n    keepalive: { successesBeforeUp: 2, timeout: 2.5 }\n")
    resources = load_resources(routr_set)
    outbound = resources.trunks[0].outbound
    assert outbound is not None and outbound.uri_format is UriFormat.E164
    assert outbound.keepalive == Keepalive(interval=10, failures_before_down=3, successes_before_up=1, timeout=5)
    assert resources.peers[0].keepalive == Keepalive(30, 2, 2, 2.5)
    plain = load_resources(ROUTR_RESOURCES)  # off unless asked for
    assert plain.trunks[0].outbound.uri_format is UriFormat.DIALLED and plain.trunks[0].outbound.keepalive is None
    assert plain.peers[0].keepalive is None
    edit(routr_set, "peers.yaml", "successesBeforeUp: 2,", "enabled: false, successesBeforeUp: 2,")
    assert load_resources(routr_set).peers[0].keepalive is None
    edit(routr_set, "trunks.yaml", "uriFormat: e164", "uriFormat: E.164")
    edit(routr_set, "trunks.yaml", "interval: 10", "interval: 0")
    assert {(f, p) for f, p, _ in errors_of(routr_set)} == {
        ("trunks.yaml", "/0/spec/outbound/uriFormat"), ("trunks.yaml", "/0/spec/outbound/keepalive/interval")}
