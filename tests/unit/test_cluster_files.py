"""The files in cluster/ pass Ray's own validators, offline (`ray up` itself needs SSH to real nodes)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

from routr_ray.actors.serve_app import APP_NAME, GRPC_SERVICER

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


def test_onprem_file_names_head_and_workers() -> None:
    provider = load("onprem.yaml")["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and provider["worker_ips"]


def serve_config_of(document: dict[str, Any]) -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(document)


def check_routr_app(schema: ServeDeploySchema) -> None:
    assert schema.grpc_options.grpc_servicer_functions == [GRPC_SERVICER]
    (app,) = schema.applications
    assert app.name == APP_NAME
    module, _, attr = app.import_path.partition(":")
    builder = getattr(__import__(module, fromlist=[attr]), attr)
    assert callable(builder)


def test_serve_config_passes_serves_schema() -> None:
    schema = serve_config_of(load("serve_config.yaml"))
    check_routr_app(schema)
    assert schema.grpc_options.port == 51901


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


def test_serve_config_builder_builds_the_app_of_a_config_dir() -> None:
    from ray.serve import Application

    from routr_ray.actors.launcher import serve_config_app

    app = serve_config_app({"config_dir": str(Path(__file__).resolve().parents[2] / "config")})
    assert isinstance(app, Application)


def test_cluster_readme_warns_about_open_ports() -> None:
    text = (CLUSTER / "README.md").read_text()
    for port in ("5060", "51901", "51902", "8265"):
        assert port in text
    assert "every interface without TLS" in text
