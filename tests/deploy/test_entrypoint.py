"""deploy/container/entrypoint.sh: which gslb command line each container command becomes.

The script runs for real under /bin/sh; `gslb` is a stand-in on PATH that prints its arguments
(the image test runs the entrypoint with the real gslb from the built image).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY

ENTRYPOINT = DEPLOY / "container" / "entrypoint.sh"
CONFIG = "/etc/gslb/gslb.yaml"


def run(tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "gslb"
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" gslb "$@"\n')
    stand_in.chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", **(env or {})},
        timeout=10,
        check=True,
    )
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["gslb", "serve"]),
        (["probe"], ["gslb", "probe"]),
        (["check", "-c", "/mine.yaml"], ["gslb", "check", "-c", "/mine.yaml"]),
        (["-v"], ["gslb", "serve", "-v"]),
        (["healthcheck"], ["gslb", "healthcheck"]),
        (["state", "--endpoints"], ["gslb", "state", "--endpoints"]),
        (["--version"], ["gslb", "--version"]),
        (["echo", "not", "gslb"], ["not gslb"]),
    ],
    ids=["default", "probe", "own-config", "flags", "healthcheck", "client", "version", "other"],
)
def test_entrypoint_command_lines(tmp_path: Path, args: list[str], expected: list[str]) -> None:
    assert run(tmp_path, args) == expected
