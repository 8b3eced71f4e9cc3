"""What a host or a container varies, given by flag or `GSLB_*` environment variable over the file.

Adapter layer (yaml, through the loader). One config file can then run several processes
on one host, or one image in many containers: listen addresses, identity, snapshot path,
state URL, tokens file and prober id come from the command line or the environment.
Precedence: the file < `GSLB_*` variables < flags.

Each value becomes a `Setting` that the loader grafts into the parsed YAML tree before it
reads it, so it is checked by the same code as the file (a bad value is reported as
`GSLB_SERVER_LISTEN: "x" is not ADDRESS:PORT ...`), the checks across keys see it
(`lame_duck_s` needs `metrics_listen`, workers need `state.redis_url`), and a SIGHUP reload
applies it again (`Config.settings`). The variables are named `GSLB_` + the YAML path upper
cased, dots as underscores; an empty variable counts as unset (compose files write
`${VAR:-}`). Relative paths from a flag or variable are relative to the working directory,
as a shell user expects (the file's own are relative to the file's folder).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from gslb.config.model import Setting

Kind = Literal["string", "path", "list"]

OVERRIDABLE: Mapping[str, Kind] = {
    "server.listen": "list",
    "server.metrics_listen": "string",
    "server.identity.nsid": "string",
    "server.identity.id_server": "string",
    "server.identity.hostname_bind": "string",
    "state.redis_url": "string",
    "state.snapshot_path": "path",
    "api.listen": "string",
    "api.tokens_file": "path",
    "prober.id": "string",
}
"""The YAML keys a `GSLB_*` variable can set, and how its text is read."""


def env_name(path: str) -> str:
    """The variable of a YAML path: server.metrics_listen -> GSLB_SERVER_METRICS_LISTEN."""
    return "GSLB_" + path.upper().replace(".", "_")


@dataclass(frozen=True, slots=True)
class Flag:
    """A command-line option that sets one or more YAML keys."""

    flag: str
    commands: tuple[str, ...]
    paths: tuple[str, ...]
    metavar: str
    help: str
    repeat: bool = False  # each use adds one element of a list

    @property
    def dest(self) -> str:
        return "override_" + self.flag.lstrip("-").replace("-", "_")


_IDENTITY = ("server.identity.nsid", "server.identity.id_server", "server.identity.hostname_bind")

FLAGS: tuple[Flag, ...] = (
    Flag("--listen", ("serve",), ("server.listen",), "ADDR:PORT", "answer DNS here (repeatable)", True),
    Flag("--metrics-listen", ("serve",), ("server.metrics_listen",), "ADDR:PORT", "serve /metrics here"),
    Flag("--identity", ("serve",), _IDENTITY, "NAME", "this node's NSID, id.server and hostname.bind"),
    Flag("--snapshot-path", ("serve",), ("state.snapshot_path",), "FILE", "keep the last good state here"),
    Flag("--api-listen", ("serve",), ("api.listen",), "ADDR:PORT", "the embedded api's address"),
    Flag("--listen", ("api",), ("api.listen",), "ADDR:PORT", "the api's address"),
    Flag("--state-url", ("serve", "probe", "api"), ("state.redis_url",), "URL", "the Redis state store"),
    Flag("--tokens-file", ("serve", "api"), ("api.tokens_file",), "FILE", "the api's tokens"),
    Flag("--id", ("probe",), ("prober.id",), "NAME", "this prober's name in the store"),
)
"""Every override flag of every command (`gslb serve`, `gslb probe`, `gslb api`)."""


def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the override flags of `command` to its parser."""
    for flag in FLAGS:
        if command not in flag.commands:
            continue
        keys = ", ".join(flag.paths)
        parser.add_argument(
            flag.flag,
            dest=flag.dest,
            metavar=flag.metavar,
            action="append" if flag.repeat else "store",
            help=f"{flag.help}; overrides {keys} and ${env_name(flag.paths[0])}",
        )


def settings(
    command: str, args: argparse.Namespace | None, environ: Mapping[str, str], *, cwd: Path | None = None
) -> tuple[Setting, ...]:
    """The `GSLB_*` variables, then the flags of `command` (applied in order: the last wins)."""
    base = Path.cwd() if cwd is None else cwd
    out: list[Setting] = []
    for path, kind in OVERRIDABLE.items():
        name = env_name(path)
        text = environ.get(name, "").strip()
        if text:
            out.append(_setting(path, kind, [text], name, base))
    for flag in FLAGS:
        given = getattr(args, flag.dest, None) if command in flag.commands else None
        if given is None:
            continue
        texts = list(given) if isinstance(given, list) else [given]
        out.extend(_setting(path, OVERRIDABLE[path], texts, flag.flag, base) for path in flag.paths)
    return tuple(out)


def _setting(path: str, kind: Kind, texts: Sequence[str], origin: str, base: Path) -> Setting:
    if kind == "list":
        # a variable holds the whole list, comma separated; a repeated flag one element each
        values = tuple(part.strip() for text in texts for part in text.split(",") if part.strip())
    elif kind == "path":
        values = tuple(str(base / Path(text).expanduser()) for text in texts[-1:])
    else:
        values = tuple(texts[-1:])
    return Setting(path, values, origin)


_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"


def graft(root: yaml.Node | None, setting: Setting) -> yaml.Node | None:
    """Put `setting` into a composed YAML document in place of the file's value.

    The new nodes carry a mark named after the setting's origin with line -1, which
    `yamlnode.Problems` reports as "GSLB_SERVER_LISTEN: ..." instead of a file position. A
    key whose parent is written as something other than a mapping is left alone: the
    loader reports the file's mistake."""
    mark = yaml.Mark(setting.origin, 0, -1, -1, None, 0)
    value: yaml.Node
    if OVERRIDABLE.get(setting.path) == "list":
        value = yaml.SequenceNode(_SEQ, [yaml.ScalarNode(_STR, v, mark, mark) for v in setting.values])
        value.start_mark = value.end_mark = mark
    else:
        value = yaml.ScalarNode(_STR, setting.values[-1] if setting.values else "", mark, mark)
    if root is None or _is_null(root):
        root = yaml.MappingNode(_MAP, [], mark, mark)
    node = root
    *parents, last = setting.path.split(".")
    for key in parents:
        if not isinstance(node, yaml.MappingNode):
            return root
        child = _child(node, key)
        if child is None or _is_null(child):
            child = yaml.MappingNode(_MAP, [], mark, mark)
            _put(node, key, child, mark)
        node = child
    if isinstance(node, yaml.MappingNode):
        _put(node, last, value, mark)
    return root


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _child(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    """The value of `key` as the loader reads it (the last, when a key is given twice)."""
    found = None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and str(k.value) == key:
            found = v
    return found


def _put(node: yaml.MappingNode, key: str, value: yaml.Node, mark: yaml.Mark) -> None:
    for index in reversed(range(len(node.value))):
        k, _ = node.value[index]
        if isinstance(k, yaml.ScalarNode) and str(k.value) == key:
            node.value[index] = (k, value)
            return
    node.value.append((yaml.ScalarNode(_STR, key, mark, mark), value))
