"""Read deploy/: the compose file, the Kubernetes manifests and the image's user, for tests/deploy."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
EXAMPLE_ZONE = ROOT / "zones" / "gslb.example.com.zone"

Doc = dict[str, Any]


def image_uid() -> int:
    """The numeric user the Containerfile runs as (its `ARG GSLB_UID=`)."""
    found = re.search(r"^ARG GSLB_UID=(\d+)$", CONTAINERFILE.read_text(), re.MULTILINE)
    assert found, f"{CONTAINERFILE} has no ARG GSLB_UID=<number>"
    return int(found.group(1))


def compose() -> Doc:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def compose_config_view(service: Doc, etc: Path) -> Path:
    """/etc/gslb as a compose service sees it: its bind mounts under /etc/gslb, copied to `etc`."""
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if target.startswith("/etc/gslb") and source.startswith("."):
            copy_tree((COMPOSE.parent / source).resolve(), etc / Path(target).relative_to("/etc/gslb"))
    return etc


def kubernetes_files() -> list[Path]:
    """The files kustomization.yaml lists, in its order."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return [KUBERNETES / name for name in kustomization["resources"]]


def kubernetes_docs() -> list[Doc]:
    return [doc for path in kubernetes_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"want one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_templates(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(kind/name, pod spec) of every workload."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def gslb_check(config_dir: Path) -> str:
    """`gslb check -c config_dir/gslb.yaml` with the package under test; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "gslb", "check", "-c", str(config_dir / "gslb.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def copy_tree(source: Path, target: Path) -> None:
    """Put `source` (a file or a directory) at `target`, as a bind mount would."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)
