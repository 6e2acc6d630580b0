"""The files in cluster/ pass Ray's own validators, offline (`ray up` itself needs SSH to real nodes), and keep
the cluster closed (DESIGN §6b): Ray token auth on every node and client, no Serve gRPC proxy."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

from routr_ray.actors.serve_app import APP_NAME

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
RAY_UP_FILES = ("onprem.yaml", "aws.yaml")


def load(name: str) -> Any:
    return yaml.safe_load((CLUSTER / name).read_text())


def check_ray_up(config: dict[str, Any]) -> None:
    validate_config(prepare_config(copy.deepcopy(config)))  # the validator wants the filled config


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_file_passes_rays_validator(name: str) -> None:
    config = load(name)
    check_ray_up(config)
    commands = " ".join(config["setup_commands"] + config["head_start_ray_commands"])
    assert "pip install" in commands and "/opt/routr/src" in commands
    assert "routr-ray deploy --address auto /opt/routr/config" in " ".join(config["head_start_ray_commands"])
    assert config["file_mounts"]["/opt/routr/config"] == "./config"


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_the_validator_rejects_a_broken_copy(name: str) -> None:
    config = load(name)
    config["idle_timeout_minuts"] = 5  # a typo: the schema allows no unknown keys
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minuts"):
        check_ray_up(config)


RAY_PORT_FLAGS = ("--node-manager-port=", "--object-manager-port=", "--dashboard-agent-grpc-port=",
                  "--dashboard-agent-listen-port=", "--runtime-env-agent-port=", "--metrics-export-port=",
                  "--min-worker-port=", "--max-worker-port=")


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_file_turns_on_ray_token_auth_everywhere(name: str) -> None:
    config = load(name)
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        assert "RAY_AUTH_MODE=token" in command, command
        for flag in RAY_PORT_FLAGS:  # fixed ports: the firewall rules in docs/security.md name them
            assert flag in command, (flag, command)
    (deploy,) = [c for c in config["head_start_ray_commands"] if "routr-ray deploy" in c]
    assert "RAY_AUTH_MODE=token" in deploy  # a Ray client of the cluster needs the token too
    # the token the operator generated travels to every node and lands at Ray's default path, owner-only
    assert config["file_mounts"]["/opt/routr/ray_auth_token"] == "~/.ray/auth_token"
    assert any("install -m 600 /opt/routr/ray_auth_token ~/.ray/auth_token" in c for c in config["setup_commands"])


def test_onprem_file_names_head_and_workers() -> None:
    provider = load("onprem.yaml")["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and provider["worker_ips"]


def serve_config_of(document: dict[str, Any]) -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(document)


def check_routr_app(schema: ServeDeploySchema) -> None:
    # Serve's gRPC proxy stays off (it binds [::] whatever the config says): no servicer, no gRPC server
    assert not schema.grpc_options.grpc_servicer_functions
    assert schema.http_options.host == "127.0.0.1"
    (app,) = schema.applications
    assert app.name == APP_NAME
    module, _, attr = app.import_path.partition(":")
    builder = getattr(__import__(module, fromlist=[attr]), attr)
    assert callable(builder)


def test_serve_config_passes_serves_schema() -> None:
    schema = serve_config_of(load("serve_config.yaml"))
    check_routr_app(schema)


def test_serve_schema_rejects_a_broken_copy() -> None:
    document = load("serve_config.yaml")
    document["applications"][0]["import_path"] = 42
    with pytest.raises(Exception, match="import_path"):
        serve_config_of(document)


def test_rayservice_embeds_a_valid_serve_config_and_the_actor_job() -> None:
    service, job = yaml.safe_load_all((CLUSTER / "rayservice.yaml").read_text())
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    check_routr_app(serve_config_of(yaml.safe_load(service["spec"]["serveConfigV2"])))
    assert serve_config_of(yaml.safe_load(service["spec"]["serveConfigV2"])) == serve_config_of(
        load("serve_config.yaml"))
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in head["ports"]} >= {51901, 51902}
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["routr-ray", "deploy", "--skip-serve"]
    workers = [g["template"]["spec"]["containers"][0] for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
    for container in (head, *workers, job["spec"]["template"]["spec"]["containers"][0]):
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "ray-auth-token", container["name"]


def test_serve_config_builder_builds_the_app_of_a_config_dir() -> None:
    from ray.serve import Application

    from routr_ray.actors.launcher import serve_config_app

    app = serve_config_app({"config_dir": str(Path(__file__).resolve().parents[2] / "config")})
    assert isinstance(app, Application)


def test_cluster_readme_warns_about_open_ports() -> None:
    text = (CLUSTER / "README.md").read_text()
    for port in ("5060", "51901", "51902", "8265", "6379", "10001"):
        assert port in text
    assert "every interface without TLS" in text
    assert "RAY_AUTH_MODE=token" in text and "ray get-auth-token --generate" in text


EDGE_LABEL = "routr-group=edge"


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_files_pin_edgeports_to_the_edge_group(name: str) -> None:
    """Issue 17: EdgePorts run (and restart) on the edge group only: its nodes carry the label, and the deploy gives
    every EdgePort without a placement of its own that label (routr_ray/actors/edgeport.py default_placement)."""
    config = load(name)
    (deploy,) = [c for c in config["head_start_ray_commands"] if "routr-ray deploy" in c]
    assert f"ROUTR_RAY_EDGE_LABELS={EDGE_LABEL}" in deploy
    (head_start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "routr-group" not in head_start  # the head is not part of the edge group
    if name == "onprem.yaml":
        (worker_start,) = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
        assert f"--labels={EDGE_LABEL}," in worker_start
    else:
        edge = config["available_node_types"]["edge"]
        assert edge["labels"] == {"routr-group": "edge"} and edge["min_workers"] >= 1
        assert "labels" not in config["available_node_types"]["head"]


def test_rayservice_pins_edgeports_to_the_edge_group() -> None:
    service, job = yaml.safe_load_all((CLUSTER / "rayservice.yaml").read_text())
    (edge,) = [g for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"] if g["groupName"] == "edge"]
    assert edge["rayStartParams"]["labels"] == EDGE_LABEL
    assert "labels" not in service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ROUTR_RAY_EDGE_LABELS"] == EDGE_LABEL


def test_the_edge_labels_become_the_placement_of_edgeports_without_one() -> None:
    from routr_ray.actors.edgeport import default_placement, placement_options
    from routr_ray.config.edgeport import EdgePortConfig, Placement

    pinned = default_placement(EdgePortConfig(), EDGE_LABEL)
    assert placement_options(pinned) == {"label_selector": {"routr-group": "edge"}}
    own = EdgePortConfig(placement=Placement(labels=(("routr-host", "sip-a"),)))
    assert default_placement(own, EDGE_LABEL) is own  # an EdgePort's own placement wins
    assert default_placement(EdgePortConfig(), "") == EdgePortConfig()
    with pytest.raises(ValueError, match="ROUTR_RAY_EDGE_LABELS"):
        default_placement(EdgePortConfig(), "routr-group")


def test_the_two_node_example_pins_one_edgeport_per_machine() -> None:
    from routr_ray.config import load_config_dir

    config = load_config_dir(CLUSTER / "two-node")
    assert [(e.ref, e.placement.labels) for e in config.edgeports] == [
        ("edgeport-01", (("routr-host", "sip-a"),)), ("edgeport-02", (("routr-host", "sip-b"),))]
    readme = (CLUSTER / "README.md").read_text()
    assert "cluster/two-node" in readme and "routr-host=sip-a" in readme and "routr-host=sip-b" in readme
