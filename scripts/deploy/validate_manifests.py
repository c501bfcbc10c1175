"""Validate rendered Kubernetes manifests (``helm template`` output on stdin or in files) against the
Kubernetes schemas shipped by kubernetes-validate; custom resources (ServiceMonitor, PrometheusRule)
are checked for the fields Prometheus Operator needs. Exit 1 naming every invalid manifest."""

from __future__ import annotations

import sys

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33"
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints"),
          ("monitoring.coreos.com/v1", "PrometheusRule"): ("groups",)}


def main(paths: list[str]) -> int:
    texts = [open(p).read() for p in paths] if paths else [sys.stdin.read()]
    failures, count = [], 0
    for text in texts:
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            count += 1
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            custom = CUSTOM.get((doc.get("apiVersion"), doc.get("kind")))
            if custom is not None:
                missing = [field for field in custom if field not in doc.get("spec", {})]
                if missing:
                    failures.append(f"{name}: spec lacks {missing}")
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                failures.append(f"{name}: {exc.message} at {'/'.join(map(str, exc.path))}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                failures.append(f"{name}: no schema: {exc}")
    for failure in failures:
        print(f"invalid: {failure}", file=sys.stderr)
    print(f"{count - len(failures)} of {count} manifests valid against Kubernetes {KUBERNETES_VERSION}")
    return 1 if failures or not count else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
