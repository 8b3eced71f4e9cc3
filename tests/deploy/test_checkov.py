"""checkov's security checks over deploy/kubernetes and the Containerfile.

checkov is not in the dev extras: it brings ~100 packages (~290 MB: boto3, numpy, networkx...)
and pins some the project's own dependencies share (packaging<24, aiohttp<3.15), so it would
hold the product's test environment back. It gets a venv of its own instead, made once in
~/.cache/gslb/checkov-VERSION (about 40 s; a run then takes about 15 s). The version is pinned:
a new checkov brings new checks, so raise VERSION and review ACCEPTED together.

Every failed check must be in ACCEPTED, with the reason it is a choice and not a mistake.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import CONTAINERFILE, KUBERNETES

pytestmark = pytest.mark.timeout(600)

VERSION = "3.3.30"
VENV = Path(os.environ.get("GSLB_CHECKOV_VENV") or Path.home() / ".cache" / "gslb" / f"checkov-{VERSION}")
OFFLINE = (
    "NewConnectionError",
    "Failed to establish",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution",
)

WORKLOADS = (
    "Deployment.gslb.gslb-responder",
    "Deployment.gslb.gslb-prober",
    "Deployment.gslb.gslb-api",
    "StatefulSet.gslb.redis",
)
ACCEPTED: dict[tuple[str, str], str] = {
    **{
        ("CKV_K8S_11", w): "no CPU limits: CFS throttling turns into DNS latency spikes; requests are set"
        for w in WORKLOADS
    },
    **{("CKV_K8S_43", w): "pin by digest in kustomization.yaml `images:` once pushed" for w in WORKLOADS},
    **{
        ("CKV_K8S_15", w): "IfNotPresent with fixed tags; Always adds a registry round trip"
        for w in WORKLOADS
    },
    ("CKV_K8S_25", "Deployment.gslb.gslb-responder"): "NET_BIND_SERVICE, the one capability, for port 53",
    (
        "CKV_K8S_8",
        "Deployment.gslb.gslb-prober",
    ): "the prober listens on nothing; `gslb state` shows it stale",
    (
        "CKV_K8S_9",
        "Deployment.gslb.gslb-prober",
    ): "the prober listens on nothing; `gslb state` shows it stale",
    (
        "CKV_K8S_35",
        "Deployment.gslb.gslb-api",
    ): "GSLB_API_TOKENS is an env var by design (may hold sha256 hashes)",
    ("CKV_DOCKER_7", "/Dockerfile.FROM"): "FROM ${BASE}: the ARG's default is python:3.11-slim, a fixed tag",
}


def checkov() -> Path:
    """checkov in its own venv, made once (a stamp marks a finished install)."""
    program, stamp = VENV / "bin" / "checkov", VENV / ".installed"
    if stamp.exists():
        return program
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
    installed = subprocess.run(
        [VENV / "bin" / "pip", "install", "-q", "--disable-pip-version-check", f"checkov=={VERSION}"],
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    if installed.returncode != 0:
        output = installed.stdout + installed.stderr
        if any(sign in output for sign in OFFLINE):
            pytest.skip(f"checkov {VERSION} cannot be installed: no network to PyPI\n{output[-500:]}")
        raise AssertionError(f"pip install checkov=={VERSION} failed:\n{output[-3000:]}")
    stamp.touch()
    return program


def failed_checks(framework: str, directory: Path) -> set[tuple[str, str]]:
    result = subprocess.run(
        [
            checkov(),
            "-d",
            str(directory),
            "--framework",
            framework,
            "-o",
            "json",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: some check failed
    report: Any = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["passed"] > 0, report["summary"]
    return {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}


def test_kubernetes_manifests_fail_only_accepted_checks() -> None:
    failed = failed_checks("kubernetes", KUBERNETES)
    assert failed - ACCEPTED.keys() == set()


def test_containerfile_fails_only_accepted_checks(tmp_path: Path) -> None:
    shutil.copyfile(CONTAINERFILE, tmp_path / "Dockerfile")  # checkov knows files by that name
    failed = failed_checks("dockerfile", tmp_path)
    assert failed - ACCEPTED.keys() == set()
