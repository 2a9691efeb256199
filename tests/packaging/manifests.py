"""Loading and checking the Kubernetes manifests in packaging/kubernetes (shared by tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "packaging" / "kubernetes"
MANIFESTS = sorted(KUBERNETES.glob("*.yaml"))
# The oldest Kubernetes we support and the newest the installed validator knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# CRDs the validator has no schema for; their fields are checked by hand in the tests.
NO_SCHEMA_GROUPS = ("cert-manager.io/",)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def validate_strictly(doc: dict[str, Any], version: str) -> None:
    """kubernetes-validate --strict on one object; raises on any error or unknown kind."""
    kubernetes_validate.validate(doc, version, strict=True)


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector evaluated the way the API server does (terms ANDed)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for term in selector.get("matchExpressions") or []:
        key, operator, values = term["key"], term["operator"], term.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True
