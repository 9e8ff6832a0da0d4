#!/usr/bin/env bash
# Renders every kustomize overlay (kubectl kustomize, when kubectl is installed) and checks
# that every manifest parses as YAML and names apiVersion, kind and metadata.name.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
python3 - <<'PY'
import pathlib, sys, yaml
bad = 0
for path in sorted(pathlib.Path("k8s").rglob("*.yaml")):
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as e:
        print(f"{path}: {e}"); bad += 1
        continue
    for doc in docs:
        if doc is None:
            continue
        if path.name == "kustomization.yaml":
            for ref in doc.get("resources", []) + [p.get("path") for p in doc.get("patches", []) if isinstance(p, dict) and p.get("path")]:
                if not (path.parent / ref).exists():
                    print(f"{path}: missing resource {ref}"); bad += 1
            continue
        for key in ("apiVersion", "kind"):
            if key not in doc:
                print(f"{path}: no {key}"); bad += 1
        if not doc.get("metadata", {}).get("name"):
            print(f"{path}: no metadata.name"); bad += 1
print("k8s manifests:", "ok" if not bad else f"{bad} problems")
sys.exit(1 if bad else 0)
PY
if command -v kubectl >/dev/null 2>&1; then
  for overlay in k8s/overlays/*/; do
    kubectl kustomize "$overlay" >/dev/null && echo "rendered $overlay"
  done
else
  echo "kubectl not installed: overlays not rendered (YAML checked only)"
fi
