"""Flags and GSLB_* variables over the file: precedence, checking, paths, reloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from gslb.cli import build_parser, main
from gslb.config import reference
from gslb.config.loader import load
from gslb.config.model import Listen, Setting
from gslb.config.overrides import FLAGS, OVERRIDABLE, env_name, settings
from gslb.errors import ConfigError
from tests.server_fixture import EXAMPLE_ZONE

FILE = """
server:
  listen: ["127.0.0.1:5300"]
  identity: {nsid: from-file, version_bind: gslb}
  workers: WORKERS
zones: [{origin: gslb.example.com, file: ZONE}]
regions: [europe]
datacenters:
  ams: {latitude: 52.37, longitude: 4.90, region: europe}
services:
  www.gslb.example.com:
    datacenters:
      ams: [192.0.2.10]
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gslb.yaml"
    path.write_text(FILE.replace("ZONE", str(EXAMPLE_ZONE)).replace("WORKERS", "1"))
    return path


def serve_settings(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[Setting, ...]:
    args = build_parser().parse_args(["serve", *argv])
    return settings("serve", args, env, cwd=cwd)


def test_the_file_then_the_environment_then_the_flag(config_file: Path) -> None:
    assert load(config_file).server.identity.nsid == "from-file"
    env = {"GSLB_SERVER_IDENTITY_NSID": "from-env", "GSLB_SERVER_LISTEN": "127.0.0.1:5301"}
    config = load(config_file, serve_settings([], env))
    assert config.server.identity.nsid == "from-env"
    assert config.server.identity.version_bind == "gslb"  # the rest of the mapping stays
    assert config.server.listen == (Listen("127.0.0.1", 5301),)
    config = load(config_file, serve_settings(["--identity", "from-flag"], env))
    assert config.server.identity.nsid == "from-flag"
    assert config.server.identity.id_server == "from-flag"
    assert config.server.identity.hostname_bind == "from-flag"
    assert config.server.listen == (Listen("127.0.0.1", 5301),)  # no flag: the variable's


def test_lists_from_a_variable_and_from_repeated_flags(config_file: Path) -> None:
    env = {"GSLB_SERVER_LISTEN": "127.0.0.1:5301, [::1]:5301"}
    config = load(config_file, serve_settings([], env))
    assert config.server.listen == (Listen("127.0.0.1", 5301), Listen("::1", 5301))
    flags = ["--listen", "127.0.0.1:5302", "--listen", "127.0.0.1:5303"]
    config = load(config_file, serve_settings(flags, env))
    assert config.server.listen == (Listen("127.0.0.1", 5302), Listen("127.0.0.1", 5303))


def test_an_empty_variable_is_unset(config_file: Path) -> None:
    config = load(config_file, serve_settings([], {"GSLB_SERVER_IDENTITY_NSID": " "}))
    assert config.server.identity.nsid == "from-file"


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (
            [],
            {"GSLB_SERVER_LISTEN": "localhost:53"},
            'GSLB_SERVER_LISTEN: "localhost:53" is not ADDRESS:PORT',
        ),
        (["--metrics-listen", "9153"], {}, '--metrics-listen: "9153" is not ADDRESS:PORT'),
        ([], {"GSLB_API_LISTEN": "127.0.0.1"}, 'GSLB_API_LISTEN: "127.0.0.1" is not ADDRESS:PORT'),
    ],
    ids=["env-list", "flag", "env-api"],
)
def test_a_bad_value_names_its_flag_or_variable(
    config_file: Path, argv: list[str], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(config_file, serve_settings(argv, env))
    (problem,) = info.value.problems
    assert problem.startswith(expected), problem
    assert "(for server." in problem or "(for api." in problem


def test_relative_paths_are_relative_to_the_working_directory(config_file: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    env = {"GSLB_STATE_SNAPSHOT_PATH": "a.json", "GSLB_API_TOKENS_FILE": "~/tokens"}
    config = load(config_file, serve_settings(["--snapshot-path", "b.json"], env, cwd=cwd))
    assert config.state.snapshot_path == cwd / "b.json"
    assert config.api.tokens_file == Path("~/tokens").expanduser()


def test_a_section_missing_from_the_file_is_made(config_file: Path) -> None:
    env = {"GSLB_PROBER_ID": "prober-7", "GSLB_STATE_REDIS_URL": "redis://127.0.0.1:6390/0"}
    config = load(config_file, settings("probe", None, env))
    assert config.prober.id == "prober-7"
    assert config.state.redis_url == "redis://127.0.0.1:6390/0"


def test_checks_across_keys_see_the_overrides(tmp_path: Path) -> None:
    """Two workers need Redis: a state URL from the environment satisfies the file's workers."""
    path = tmp_path / "gslb.yaml"
    path.write_text(FILE.replace("ZONE", str(EXAMPLE_ZONE)).replace("WORKERS", "2"))
    with pytest.raises(ConfigError, match=r"2 workers need state\.redis_url"):
        load(path)
    config = load(path, serve_settings([], {"GSLB_STATE_REDIS_URL": "redis://127.0.0.1:1/0"}))
    assert config.server.workers == 2
    assert config.server.lame_duck_s == 0.0
    config = load(path, serve_settings(["--state-url", "redis://x/0", "--metrics-listen", "127.0.0.1:9"], {}))
    assert config.server.lame_duck_s == 5.0  # a metrics listener makes the lame duck possible


def test_a_reload_applies_them_again(config_file: Path) -> None:
    config = load(config_file, serve_settings(["--identity", "node-b"], {}))
    again = load(config.source, config.settings)  # what every SIGHUP reload does
    assert again == config
    assert again.server.identity.nsid == "node-b"


def test_each_command_has_its_flags() -> None:
    parser = build_parser()
    api = parser.parse_args(
        ["api", "-c", "x", "--listen", "127.0.0.1:1", "--tokens-file", "t", "--state-url", "u"]
    )
    assert [(s.path, s.values[0]) for s in settings("api", api, {}, cwd=Path("/w"))] == [
        ("api.listen", "127.0.0.1:1"),
        ("state.redis_url", "u"),
        ("api.tokens_file", "/w/t"),
    ]
    probe = parser.parse_args(["probe", "-c", "x", "--id", "p1", "--state-url", "u"])
    assert {s.path for s in settings("probe", probe, {})} == {"prober.id", "state.redis_url"}
    with pytest.raises(SystemExit):
        parser.parse_args(["probe", "-c", "x", "--identity", "n"])


def test_every_override_is_a_documented_key_of_its_kind() -> None:
    keys = {k.path: k for k in reference.documented_keys()}
    for path, kind in OVERRIDABLE.items():
        key = keys[path]
        assert kind == {"path": "path", "list of host:port": "list"}.get(key.shape, "string"), path
    for flag in FLAGS:
        assert set(flag.paths) <= set(OVERRIDABLE), flag
    assert env_name("server.metrics_listen") == "GSLB_SERVER_METRICS_LISTEN"


def test_gslb_check_reads_the_environment(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GSLB_SERVER_METRICS_LISTEN", "nowhere")
    assert main(["check", "-c", str(config_file)]) == 2
    assert 'GSLB_SERVER_METRICS_LISTEN: "nowhere" is not ADDRESS:PORT' in capsys.readouterr().err
