"""The ConnectTokens config kind (routr_ray/config/connect_tokens.py): the web agents' public keys and audience, how
they reach the Connect replicas, and the errors a bad key gets (file and field named)."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from routr_ray.actors.connect import ConnectDeploymentProcessor, connect_token_options
from routr_ray.actors.launcher import RunOptions, StartupError, load
from routr_ray.config import ConfigInvalid, load_config_dir, validate_paths
from routr_ray.config.connect_tokens import KeySource, read_public_keys, to_options
from routr_ray.processors.connect.connect_token import ConnectTokenVerifier

REPO = Path(__file__).resolve().parents[2]
EC = ec.generate_private_key(ec.SECP256R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public(key: object) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def private(key: object) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                             serialization.NoEncryption()).decode()


def indented(pem: str, spaces: int = 10) -> str:
    return "\n".join(" " * spaces + line for line in pem.strip().splitlines())


def document(keys: str, extra: str = "") -> str:
    return f"apiVersion: v2beta1\nkind: ConnectTokens\nref: web\nspec:\n  audience: sip.example.com\n" \
           f"  publicKeys:\n{keys}\n{extra}"


def test_a_document_with_a_file_and_an_inline_key(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "web.pub").write_text(public(RSA))
    (tmp_path / "tokens.yaml").write_text(document(
        f"    - file: keys/web.pub\n    - pem: |\n{indented(public(EC))}",
        "  algorithms: [ES256, RS256]\n  leewaySeconds: 2\n  maxLifetimeSeconds: 3600\n"))
    config = load_config_dir(tmp_path).connect_tokens
    assert config is not None and config.audience == "sip.example.com" and config.ref == "web"
    assert config.public_keys[0] == KeySource("/spec/publicKeys/0", file=str(tmp_path / "keys" / "web.pub"))
    assert config.algorithms == ("ES256", "RS256") and config.leeway_seconds == 2
    assert config.max_lifetime_seconds == 3600
    options = to_options(config)
    assert [p.strip() for p in options["publicKeys"]] == [public(RSA).strip(), public(EC).strip()]
    verifier = ConnectTokenVerifier.from_options(options)
    signed = jwt.encode({"aor": "sip:w@sip.local", "domain": "sip.local", "allowedMethods": ["REGISTER"],
                         "aud": "sip.example.com", "iat": int(time.time()), "exp": int(time.time()) + 60},
                        RSA, algorithm="RS256")
    assert verifier.check(signed, "REGISTER", "sip:w@sip.local").aor == "sip:w@sip.local"


def test_none_ships_and_without_one_tokens_are_off() -> None:
    assert load_config_dir(REPO / "config").connect_tokens is None
    assert connect_token_options(REPO / "config") is None


@pytest.mark.parametrize(("spec", "pointer", "reason"), [
    ("  publicKeys: []\n  audience: a", "/spec/publicKeys", "at least one"),
    ("  publicKeys: [{file: k.pub}]", "/spec/audience", "required field is missing"),
    ("  publicKeys: [{file: k.pub, pem: x}]\n  audience: a", "/spec/publicKeys/0", "at most 1 of these fields"),
    ("  publicKeys: [{}]\n  audience: a", "/spec/publicKeys/0", "at least 1 field"),
    ("  publicKeys: [{file: k.pub}]\n  audience: a\n  algorithms: [HS256]", "/spec/algorithms/0", "RS256"),
    ("  publicKeys: [{file: k.pub}]\n  audience: a\n  algorithms: [none]", "/spec/algorithms/0", "RS256"),
    ("  publicKeys: [{pem: not a key}]\n  audience: a", "/spec/publicKeys/0/pem", "no PEM block"),
])
def test_bad_documents_name_the_field(tmp_path: Path, spec: str, pointer: str, reason: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"apiVersion: v2beta1\nkind: ConnectTokens\nref: t\nspec:\n{spec}\n")
    errors = validate_paths([str(path)])
    assert any(e.pointer == pointer and reason in e.reason for e in errors), errors


def test_an_inline_private_key_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text(document(f"    - pem: |\n{indented(private(EC))}"))
    errors = validate_paths([str(tmp_path)])
    assert [(e.pointer, "private key" in e.reason) for e in errors] == [("/spec/publicKeys/0/pem", True)]


@pytest.mark.parametrize(("content", "reason"), [
    (None, "cannot read"),
    (private(EC), "a private key"),
    (public(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "1024 bits"),
    (public(ec.generate_private_key(ec.SECP384R1())), "P-256"),
    ("hello", "no PEM block"),
    (public(EC) + private(RSA), "key 2 of 2: a private key"),
])
def test_a_bad_key_file_names_the_file_and_the_field(tmp_path: Path, content: str | None, reason: str) -> None:
    if content is not None:
        (tmp_path / "web.pub").write_text(content)
    (tmp_path / "tokens.yaml").write_text(document(f"    - pem: |\n{indented(public(EC))}\n    - file: web.pub"))
    config = load_config_dir(tmp_path).connect_tokens  # key files are not read at load (as validate-config)
    assert config is not None
    with pytest.raises(ConfigInvalid) as caught:
        read_public_keys(config)
    (error,) = caught.value.errors
    assert error.file == str(tmp_path / "tokens.yaml") and error.pointer == "/spec/publicKeys/1/file"
    assert str(tmp_path / "web.pub") in error.reason and reason in error.reason


def test_keys_for_no_accepted_algorithm_are_refused(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text(document(f"    - pem: |\n{indented(public(EC))}",
                                                   "  algorithms: [RS256]\n"))
    config = load_config_dir(tmp_path).connect_tokens
    assert config is not None
    with pytest.raises(ConfigInvalid, match="/spec/algorithms: no public key is for RS256"):
        read_public_keys(config)


def test_run_refuses_to_start_with_a_bad_key_file_before_ray(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for name in ("edgeport.yaml", "dispatcher.yaml", "location.yaml"):
        (config_dir / name).write_text((REPO / "config" / name).read_text())
    (config_dir / "tokens.yaml").write_text(document("    - file: missing.pub"))
    with pytest.raises(StartupError) as caught:
        load(RunOptions(config_dir=config_dir))
    assert str(caught.value).startswith(f"{config_dir / 'tokens.yaml'}: /spec/publicKeys/0/file: cannot read "
                                        f"{config_dir / 'missing.pub'}")


def test_the_connect_replica_gets_a_verifier_from_the_options(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import routr_ray.actors.connect as connect_actor
    from routr_ray.config import Resources

    (tmp_path / "tokens.yaml").write_text(document(f"    - pem: |\n{indented(public(EC))}"))
    options = connect_token_options(tmp_path)
    assert options is not None and options["audience"] == "sip.example.com"
    monkeypatch.setattr(connect_actor, "shard_handles", lambda count: [object()] * count)  # no Ray here
    replica = ConnectDeploymentProcessor(Resources(), 1, "k" * 32, connect_tokens=options)
    assert replica.processor.connect_tokens is not None and replica.processor.web_agents is not None
    assert replica.processor.connect_tokens.audience == "sip.example.com"
    without = ConnectDeploymentProcessor(Resources(), 1, "k" * 32)
    assert without.processor.connect_tokens is None and without.processor.web_agents is None
