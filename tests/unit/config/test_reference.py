"""The generated configuration reference and JSON Schema cover the model and agree with the loader.

The loader is the judge: it is asked which keys it accepts at every mapping, whether it takes
each documented example, each bound and null, and the schema must say the same. The checked-in
docs must equal the generated output, so a model change without `gslb config reference` /
`gslb config schema` fails here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gslb.config import model, reference
from gslb.config.loader import read
from gslb.config.yamlnode import Node, parse
from gslb.config.yamlnode import Problems as YamlProblems
from tests.server_fixture import BASIC_CONFIG, EXAMPLE_ZONE, GEOIP_DATA, ROOT

DATA = ROOT / "tests" / "data" / "config"
KEYS = reference.documented_keys()
SECTION_PATHS = [p for s in reference.SECTIONS for p in (s.path, *s.also)]
VALIDATOR = jsonschema.Draft202012Validator(reference.schema())

# Names standing in for <name>, <datacenter> and [] when a key path is written into a config.
SERVICE = "www.gslb.example.com"


def base_config() -> dict[str, Any]:
    """The smallest valid config with every kind of mapping the paths need."""
    return {
        "zones": [{"origin": "gslb.example.com", "file": "gslb.example.com.zone"}],
        "regions": ["europe", "americas"],
        "datacenters": {
            "ams": {"latitude": 52.37, "longitude": 4.90, "region": "europe"},
            "iad": {"latitude": 39.04, "longitude": -77.49, "region": "americas"},
        },
        "services": {
            SERVICE: {
                "datacenters": {
                    "ams": {"endpoints": [{"address": "192.0.2.10"}]},
                    "iad": ["198.51.100.10"],
                }
            }
        },
    }


def steps(path: str) -> list[str | int]:
    """ "services.<name>.datacenters.<datacenter>.endpoints[].check" -> the keys to walk."""
    out: list[str | int] = []
    for part in path.split(".") if path else []:
        name, is_item = (part[:-2], True) if part.endswith("[]") else (part, False)
        if name == "<name>":
            name = SERVICE if out and out[-1] == "services" else "ams"
        elif name == "<datacenter>":
            name = "ams"
        out.append(name)
        if is_item:
            out.append(0)
    return out


def concrete(path: str) -> str:
    """The key path the loader's messages use: "services.www.gslb.example.com.ttl", "zones[0]"."""
    out = ""
    for step in steps(path):
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else step
    return out


def put(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`config` with `value` at the YAML `path` (mappings made on the way)."""
    *parents, last = steps(path)
    node: Any = config
    for step in parents:
        if isinstance(step, int):
            node = node[step]
        else:
            if not isinstance(node.get(step), dict | list):
                node[step] = {}
            node = node[step]
    node[last] = value
    return config


def with_key(path: str, value: Any, needs: typing.Mapping[str, str] | None = None) -> dict[str, Any]:
    config = base_config()
    for other, text in (needs or {}).items():
        put(config, other, yaml.safe_load(text))
    return put(config, path, value)


def problems(tmp_path: Path, config: dict[str, Any]) -> list[str]:
    zone = tmp_path / "gslb.example.com.zone"
    if not zone.exists():
        shutil.copy(EXAMPLE_ZONE, zone)
    file = tmp_path / "gslb.yaml"
    file.write_text(yaml.safe_dump(config, sort_keys=False))
    return list(read(file)[1].items)


def schema_errors(config: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(config)]


def yaml_data(path: Path) -> Any:
    """A config file as the loader sees it (keys as written: `NO:` is the text NO, not False)."""
    root = parse(path, YamlProblems(path))
    return None if root is None else _data(root)


def _data(node: Node) -> Any:
    if node.is_mapping:
        return {key: _data(value) for key, value in node.items()}
    if node.is_sequence:
        return [_data(element) for element in node.elements()]
    return node.scalar()


# -- every key documented ------------------------------------------------------------------------


@pytest.mark.parametrize("section", SECTION_PATHS, ids=lambda p: p or "top")
def test_documented_keys_are_the_keys_the_loader_accepts(tmp_path: Path, section: str) -> None:
    """Both ways: a key the loader takes without a doc, or a doc of a key it refuses, fails."""
    config = base_config() if not section else put(base_config(), section + ".zz_not_a_key", 1)
    if not section:
        config["zz_not_a_key"] = 1
    found = [p for p in problems(tmp_path, config) if 'unknown key "zz_not_a_key"' in p]
    assert len(found) == 1, problems(tmp_path, config)
    match = re.search(r"known: ([^)]*)\)", found[0])
    assert match is not None, found[0]
    accepted = set(match.group(1).split(", "))
    primary = next(s.path for s in reference.SECTIONS if section in (s.path, *s.also))
    documented = {k.name for k in KEYS if k.path == reference._join(primary, k.name)}
    assert documented == accepted


def _dataclasses_of(hint: Any) -> set[type]:
    found: set[type] = set()
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        found.add(hint)
    for arg in typing.get_args(hint):
        found |= _dataclasses_of(arg)
    return found


def test_every_model_field_is_a_documented_key_or_says_why_not() -> None:
    seen: set[type] = set()
    todo: list[type] = [model.Config, *(s.model for s in reference.SECTIONS if s.model is not None)]
    while todo:
        cls = todo.pop()
        if cls in seen or cls is model.Listen:  # a "host:port" string, not a mapping
            continue
        seen.add(cls)
        section = reference._section_of(cls)  # raises for a dataclass with no section
        names = {k.name for k in KEYS if reference._parent(k) == section.path}
        to_yaml = {v: k for k, v in section.renamed.items()}
        for f in dataclasses.fields(cls):
            assert to_yaml.get(f.name, f.name) in names or f.name in section.derived, (cls, f.name)
        for name, hint in typing.get_type_hints(cls).items():
            if name not in section.derived:  # a derived field's type is not written in YAML
                todo.extend(_dataclasses_of(hint))
    assert model.Check in seen and model.Pick in seen and model.RateLimit in seen


def test_a_field_without_a_doc_fails_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = dict(reference.DOCS)
    del docs["server.lame_duck_s"]
    monkeypatch.setattr(reference, "DOCS", docs)
    with pytest.raises(reference.ReferenceError, match=r"server\.lame_duck_s: no entry"):
        reference.documented_keys()


def test_no_doc_is_left_over_from_a_removed_key() -> None:
    assert set(reference.DOCS) == {k.path for k in KEYS}


def test_the_newest_keys_are_documented() -> None:
    paths = {k.path for k in KEYS}
    for path in (
        "services.<name>.strategy",
        "services.<name>.geo.countries",
        "services.<name>.weights",
        "services.<name>.pick.policy",
        "services.<name>.check.load_field",
        "services.<name>.check.load_header",
        "server.lame_duck_s",
        "server.max_state_age_s",
    ):
        assert path in paths


# -- the docs agree with the loader --------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.path)
def test_each_example_loads_and_matches_the_schema(tmp_path: Path, key: reference.Key) -> None:
    config = with_key(key.path, yaml.safe_load(key.doc.example), key.doc.needs)
    found = [p for p in problems(tmp_path, config) if "does not exist" not in p]  # example paths
    assert found == [], key.doc.example
    assert schema_errors(config) == []


def _scalar_type(key: reference.Key) -> str | None:
    schema = key.schema
    if "anyOf" in schema and schema["anyOf"][-1] == {"type": "null"}:
        schema = schema["anyOf"][0]
    kind = schema.get("type")
    return kind if kind in ("integer", "number") else None


BOUNDED = [k for k in KEYS if _scalar_type(k) and (k.doc.low is not None or k.doc.high is not None)]


@pytest.mark.parametrize("key", BOUNDED, ids=lambda k: k.path)
def test_bounds_are_the_loaders(tmp_path: Path, key: reference.Key) -> None:
    """At a bound the loader and the schema take the value; past it both refuse it."""
    integer = _scalar_type(key) == "integer"
    cases: list[tuple[float, bool]] = []
    if key.doc.low is not None:
        low = key.doc.low
        cases += [(low, True), (low - 1 if integer or low <= 0 else low / 2, False)]
    if key.doc.high is not None:
        high = key.doc.high
        cases += [(high, True), (high + 1 if integer else high * 2, False)]
    for value, ok in cases:
        given = int(value) if integer else value
        config = with_key(key.path, given, key.doc.needs)
        at = concrete(key.path) + ": "
        out_of_range = [p for p in problems(tmp_path, config) if p.startswith(at) and " is " in p]
        assert (out_of_range == []) == ok, (given, out_of_range)
        assert (schema_errors(config) == []) == ok, given


SCALARS = [k for k in KEYS if not k.shape.startswith(("mapping", "list")) and not k.doc.required]


@pytest.mark.parametrize("key", SCALARS, ids=lambda k: k.path)
def test_null_is_taken_where_the_schema_says(tmp_path: Path, key: reference.Key) -> None:
    config = with_key(key.path, None)
    loader_ok = problems(tmp_path, config) == []
    assert (schema_errors(config) == []) == loader_ok


def test_defaults_come_from_the_model() -> None:
    by_path = {k.path: k for k in KEYS}
    assert by_path["server.listen"].default == '["127.0.0.1:5353"]'
    assert by_path["server.rrl.exempt"].default == '["127.0.0.0/8", "::1/128"]'
    assert by_path["services.<name>.pick.policy"].default == "all"
    assert by_path["services.<name>.pick.policy"].allowed.startswith("one of `all`, `round_robin`")
    assert by_path["state.redis_url"].default == "not set"
    assert by_path["api.listen"].schema["anyOf"][0]["pattern"]
    assert by_path["state.poll_interval_s"].schema["default"] == 1


# -- the checked-in files are the generated ones ------------------------------------------------


def test_docs_configuration_md_is_generated() -> None:
    """Regenerate with: gslb config reference > docs/configuration.md"""
    assert (ROOT / "docs" / "configuration.md").read_text() == reference.markdown()


def test_docs_schema_is_generated() -> None:
    """Regenerate with: gslb config schema > docs/gslb.schema.json"""
    assert (ROOT / "docs" / "gslb.schema.json").read_text() == reference.schema_json()


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(reference.schema())
    assert reference.schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_cli_prints_both(capsys: pytest.CaptureFixture[str]) -> None:
    from gslb.cli import main

    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == reference.schema()
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == reference.markdown()


# -- the schema on real configs ------------------------------------------------------------------

SHIPPED = [
    ROOT / "gslb" / "data" / "gslb.yaml",
    ROOT / "deploy" / "gslb.yaml",
    ROOT / "deploy" / "compose" / "gslb.yaml",
    ROOT / "deploy" / "container" / "gslb.yaml",
    ROOT / "lab" / "gslb-lab.yaml",
    *sorted((ROOT / "bench").glob("peers*.yaml")),
]


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.exists()], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_schema_takes_the_shipped_configs(path: Path) -> None:
    assert schema_errors(yaml_data(path)) == []


def test_the_schema_takes_the_test_servers_config(tmp_path: Path) -> None:
    text = BASIC_CONFIG.format(port=5353, zone=EXAMPLE_ZONE, geoip=GEOIP_DATA, tmp=tmp_path)
    (tmp_path / "gslb.yaml").write_text(text)
    assert problems(tmp_path, yaml.safe_load(text)) == []
    assert schema_errors(yaml_data(tmp_path / "gslb.yaml")) == []


@pytest.mark.parametrize(
    ("fixture", "where"),
    [("unknown-key.yaml", ""), ("ttl-too-big.yaml", "services.www.gslb.example.com.ttl")],
)
def test_the_schema_refuses_invalid_fixtures(fixture: str, where: str) -> None:
    errors = schema_errors(yaml_data(DATA / fixture))
    assert any(e.startswith(where) for e in errors), errors


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("state.poll_intervall_s", 1, "'poll_intervall_s' was unexpected"),
        ("services.<name>.check", {"type": "htp"}, "'htp' is not one of"),
        ("services.<name>.strategy", "closest", "'closest' is not one of"),
        ("server.listen", ["localhost:53"], "does not match"),
        ("services.<name>.datacenters.<datacenter>.endpoints[].weight", -1, "is not valid under any"),
        ("datacenters.<name>.region", None, "None is not of type 'string'"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_the_schema_refuses_mistakes(tmp_path: Path, path: str, value: Any, message: str) -> None:
    config = with_key(path, value)
    assert problems(tmp_path, config) != []  # the loader refuses it too
    errors = schema_errors(config)
    assert any(message in e for e in errors), errors


def test_a_required_key_is_required() -> None:
    config = base_config()
    del config["datacenters"]["ams"]["latitude"]
    assert any("'latitude' is a required property" in e for e in schema_errors(config))
    config = copy.deepcopy(base_config())
    del config["services"][SERVICE]["datacenters"]
    assert any("'datacenters' is a required property" in e for e in schema_errors(config))


def test_the_schema_takes_the_kubernetes_configmaps_config(tmp_path: Path) -> None:
    configmap = ROOT / "deploy" / "kubernetes" / "configmap.yaml"
    if not configmap.exists():
        pytest.skip("no deploy/kubernetes/configmap.yaml")
    (tmp_path / "gslb.yaml").write_text(yaml.safe_load(configmap.read_text())["data"]["gslb.yaml"])
    assert schema_errors(yaml_data(tmp_path / "gslb.yaml")) == []


def test_the_documented_defaults_are_what_the_loader_gives(tmp_path: Path) -> None:
    """A key left out reads as its documented default (model defaults and Doc.default alike)."""
    problems(tmp_path, base_config())  # writes gslb.yaml
    config = read(tmp_path / "gslb.yaml")[0]
    service = config.services[SERVICE + "."]
    objects: dict[str, object] = {
        "server": config.server,
        "server.tcp": config.server.tcp,
        "server.identity": config.server.identity,
        "server.rrl": config.server.rrl,
        "services.<name>": service,
        "services.<name>.check": service.endpoints[0].check,
        "services.<name>.pick": service.pick,
        "services.<name>.datacenters.<datacenter>.endpoints[]": service.endpoints[0],
        "geoip": config.geoip,
        "state": config.state,
        "prober": config.prober,
        "api": config.api,
    }
    checked = 0
    for key in KEYS:
        owner = objects.get(reference._parent(key))
        section = next(s for s in reference.SECTIONS if s.path == reference._parent(key))
        field = section.renamed.get(key.name, key.name)
        if owner is None or key.default is None or not hasattr(owner, field):
            continue
        value = reference._json_default(getattr(owner, field))
        if key.path == "server.lame_duck_s":  # "5 with metrics_listen, else 0": here none
            assert value == 0
        elif key.default == "not set":
            assert value is None, key.path
        else:
            shown = value if isinstance(value, str) else json.dumps(value)
            if key.path.endswith("expect_status"):
                shown = "-".join(map(str, value))
            assert shown == key.default, key.path
        checked += 1
    assert checked > 80


def test_what_the_agreement_tests_found_in_the_loader(tmp_path: Path) -> None:
    """A number where an address belongs was dropped silently (the endpoint vanished), and
    `metrics_listen: null` opened the metrics listener on the DNS default address."""
    config = with_key("services.<name>.datacenters.<datacenter>", ["192.0.2.10", 10])
    (problem,) = problems(tmp_path, config)
    assert problem.startswith("services.www.gslb.example.com.datacenters.ams[1]: 10 is not an IP address")
    problems(tmp_path, with_key("server.metrics_listen", None))
    assert read(tmp_path / "gslb.yaml")[0].server.metrics_listen is None
