from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from routr_ray import __version__
from routr_ray.actors.launcher import redacted, resolve_config_dir
from routr_ray.actors.status import (
    ClusterStatus,
    DeploymentStatus,
    EdgePortStatus,
    LocationApiStatus,
    ShardStatus,
    format_status,
)
from routr_ray.cli import build_parser


def _run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routr_ray", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env)


def test_version_is_printed() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"routr-ray {__version__}"


def test_no_command_prints_help_and_fails() -> None:
    result = _run()
    assert result.returncode == 2
    assert "validate-config" in result.stdout


@pytest.mark.parametrize("command", [["run"], ["deploy"], ["status"], ["locate"], ["validate-config"],
                                     ["processor", "serve"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: routr-ray {' '.join(command)}")
    assert len(text.split("\n\n")[1].split()) >= 10  # a description, not only the usage line


def test_deploy_needs_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["deploy", "config"])
    assert "--address" in capsys.readouterr().err


def test_config_dir_lookup_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTR_RAY_CONFIG", "/etc/routr")
    assert resolve_config_dir("/srv/cfg") == Path("/srv/cfg")
    assert resolve_config_dir(None) == Path("/etc/routr")
    monkeypatch.delenv("ROUTR_RAY_CONFIG")
    assert resolve_config_dir(None) == Path("config")


def test_run_without_a_config_dir_fails_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "ROUTR_RAY_CONFIG"}
    result = _run("run", "--no-dashboard", cwd=tmp_path, env=env)  # ./config does not exist there
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "routr-ray: config directory config not found (use --config DIR or $ROUTR_RAY_CONFIG)"]


def test_processor_serve_with_a_bad_class_fails_with_one_line() -> None:
    result = _run("processor", "serve", "routr_ray.processors.echo:NoSuchClass", "--port", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("routr-ray: processor 'routr_ray.processors.echo:NoSuchClass'")


def test_redis_urls_lose_their_credentials_in_messages() -> None:
    assert redacted("redis://user:pw@db.local:6380/1") == "redis://db.local:6380/1"
    assert redacted("rediss://db.local:6380") == "rediss://db.local:6380"


def test_status_text_shows_every_part_and_health() -> None:
    status = ClusterStatus(
        edgeports=(EdgePortStatus("edgeport-ep1", True, (("udp", "0.0.0.0", 5060),), 8080),
                   EdgePortStatus("edgeport-ep2", False, error="actor died")),
        shards=(ShardStatus("location-shard-0", True, 3, 2), ShardStatus("location-shard-1", True, 1, 1, True)),
        location_api=LocationApiStatus(True, 51902),
        applications={"routr": "RUNNING"},
        deployments=(DeploymentStatus("routr", "dispatcher", "HEALTHY", {"RUNNING": 2}),),
    )
    text = "\n".join(format_status(status))
    assert not status.healthy
    assert "NOT healthy" in text
    assert "ok  edgeport-ep1" in text and "UDP 0.0.0.0:5060; health :8080" in text
    assert "BAD edgeport-ep2" in text and "actor died" in text
    assert "dispatcher" in text and "replicas: 2 RUNNING" in text
    assert "Location shards (2, 4 bindings)" in text and "1 bindings, 1 AORs, Redis" in text
    assert "port 51902" in text
    healthy = ClusterStatus(status.edgeports[:1], status.shards, status.location_api, status.applications,
                            status.deployments)
    assert healthy.healthy and healthy.as_dict()["healthy"] is True


def test_state_dir_option_and_key_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from routr_ray.actors.launcher import RunOptions, StartupError, resolve_key
    from routr_ray.cli import _run_options

    args = build_parser().parse_args(["run", "--state-dir", str(tmp_path / "state")])
    options = _run_options(args, tmp_path / "config")
    assert isinstance(options, RunOptions) and options.state_dir == tmp_path / "state"
    assert options.nonce_key is None  # resolved at start: env, Redis or the state directory
    monkeypatch.delenv("ROUTR_RAY_NONCE_KEY", raising=False)
    assert resolve_key(options, None) == str(tmp_path / "state" / "nonce-key")
    key = options.nonce_key
    assert key
    again = RunOptions(config_dir=tmp_path / "config", state_dir=tmp_path / "state")
    resolve_key(again, None)
    assert again.nonce_key == key  # the next start finds the same key
    with pytest.raises(StartupError, match="inside the config directory"):
        resolve_key(RunOptions(config_dir=tmp_path / "config", state_dir=tmp_path / "config" / "state"), None)


def test_status_shows_users_calls_and_trunks_from_the_metrics() -> None:
    from routr_ray.actors.status import format_metrics
    from routr_ray.observability.summary import summarize

    node_a = "\n".join([
        "# TYPE ray_routr_location_aors gauge",
        'ray_routr_location_aors{shard="0",WorkerId="a"} 2.0',
        "# TYPE ray_routr_location_bindings gauge",
        'ray_routr_location_bindings{shard="0",WorkerId="a"} 3.0',
        "# TYPE ray_routr_calls_active gauge",
        'ray_routr_calls_active{edgeport="edgeport-01",WorkerId="b"} 1.0',
        "# TYPE ray_routr_trunk_registration_state gauge",
        'ray_routr_trunk_registration_state{trunk="trunk-01"} 1.0',
        'ray_routr_trunk_registration_state{trunk="trunk-02"} 0.0', ""])
    node_b = "\n".join([
        "# TYPE ray_routr_location_aors gauge",
        'ray_routr_location_aors{shard="1",WorkerId="c"} 1.0',
        "# TYPE ray_routr_calls_active gauge",
        'ray_routr_calls_active{edgeport="edgeport-02",WorkerId="d"} 2.0', ""])
    summary = summarize([node_a, node_b], ["http://10.0.0.3:9464/metrics: timed out"])
    assert (summary.registered_aors, summary.bindings, summary.calls_in_progress) == (3, 3, 3)
    assert summary.trunks == {"trunk-01": True, "trunk-02": False}
    text = "\n".join(format_metrics(summary))
    assert "Registered users:  3 (bindings: 3)" in text
    assert "Calls in progress: 3" in text
    assert "trunk-01 registered, trunk-02 NOT registered" in text
    assert "cannot read http://10.0.0.3:9464/metrics: timed out" in text
    empty = "\n".join(format_metrics(summarize([])))
    assert "Registered users:  ? " in empty and "Calls in progress: ?" in empty and "(no trunk registers)" in empty


def test_log_dir_reaches_the_run_options(tmp_path: Path) -> None:
    from routr_ray.cli import _run_options

    args = build_parser().parse_args(["run", "--no-dashboard", "--log-dir", str(tmp_path / "logs")])
    options = _run_options(args, Path("config"))
    assert options.log_dir == tmp_path / "logs"  # type: ignore[attr-defined]
    assert _run_options(build_parser().parse_args(["run"]), Path("config")).log_dir is None  # type: ignore[attr-defined]


def test_a_stop_removes_the_temp_dir_and_moves_the_logs_asked_for(tmp_path: Path) -> None:
    """Issue 13 item 6, the file side of it: Ray's session logs go to --log-dir, the rest of the run's temporary
    directory (sockets, session files) is removed; without --log-dir everything goes."""
    from routr_ray.actors.launcher import Deployment, remove_temp_dir, session_logs

    def fake_run(name: str) -> Path:
        temp = tmp_path / name
        logs = temp / "session_2026-12-07_10-00-00_1_2" / "logs"
        logs.mkdir(parents=True)
        (logs / "raylet.out").write_text("raylet")
        (temp / "session_2026-12-07_10-00-00_1_2" / "sockets").mkdir()
        (temp / "session_latest").symlink_to(temp / "session_2026-12-07_10-00-00_1_2")
        return temp

    kept = tmp_path / "kept"
    kept.mkdir()
    deployment = Deployment(temp_dir=fake_run("run1"), log_dir=kept)
    assert session_logs(deployment) == tmp_path / "run1" / "session_2026-12-07_10-00-00_1_2" / "logs"
    remove_temp_dir(deployment)
    assert not (tmp_path / "run1").exists() and deployment.temp_dir is None
    assert (kept / "session_2026-12-07_10-00-00_1_2" / "raylet.out").read_text() == "raylet"
    remove_temp_dir(Deployment(temp_dir=fake_run("run2")))
    assert not (tmp_path / "run2").exists()


def test_an_unwritable_log_dir_is_one_line_before_ray_starts(tmp_path: Path) -> None:
    from routr_ray.actors.launcher import StartupError, check_log_dir

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StartupError, match=r"^--log-dir .*file/logs: "):
        check_log_dir(blocker / "logs")
    check_log_dir(tmp_path / "new" / "logs")
    assert (tmp_path / "new" / "logs").is_dir()
