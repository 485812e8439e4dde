#!/usr/bin/env python3
"""Checks the Kubernetes manifests as `kubectl apply -k deploy/k8s` would see them.

    scripts/check_k8s.py --bin target/debug/deliberate     # what scripts/test.sh runs
    scripts/check_k8s.py --write-rules                     # regenerate prometheusrule.yaml

Runs in the venv scripts/test.sh makes from deploy/requirements.txt (kubernetes-validate,
pinned; its bundled JSON schemas, so no network) and needs `kubectl` (its built-in
kustomize renders deploy/k8s offline). It fails when:
  - an object does not validate, strictly (unknown fields are errors), against the bundled
    schemas of the oldest and the newest Kubernetes version named below; the Prometheus
    Operator's kinds have no bundled schema and get the structural checks below instead;
  - deploy/k8s/prometheusrule.yaml is not exactly what --write-rules makes from
    deploy/prometheus/alerts.yml (and its `spec` is not the same data as that file);
  - an image is unpinned (`:latest` or no tag or digest), or the gateway's tag is not the
    crate version in Cargo.toml;
  - a namespaced object is outside the `deliberate` Namespace, which must be in the output;
  - the HPA, PDB, NetworkPolicy or ServiceMonitor does not select the gateway (pods or
    Service port), or the Deployment sets `replicas` (the HPA owns it);
  - a config volume is mounted with `subPath` or `items` (the kubelet would not update it,
    or adding a tenant would edit the Deployment), the mounts are not the paths `serve` is
    given, or a file in deploy/k8s/tenants/ is missing from the tenants ConfigMap;
  - the memory request or limit is below the measured RSS for the config's cache bound
    (MEASURED_* below);
  - `deliberate check` rejects the rendered config and tenant files.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES = K8S / "prometheusrule.yaml"
NAMESPACE = "deliberate"
POD_LABELS = {"app.kubernetes.io/name": "deliberate"}
# The oldest Kubernetes these manifests are for, and the newest the package knows.
KUBERNETES_VERSIONS = ["1.29", kubernetes_validate.latest_version()]
# Kinds without a bundled schema that this script checks itself.
OPERATOR_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
                  ("monitoring.coreos.com/v1", "PrometheusRule")}
# Measured with scripts/measure_rss.py (README, "Deployment"; release build, 2026-12-08):
# VmRSS 15.5 MiB idle, 103 MiB once the default 64 MiB response cache is full (6144
# distinct 16 KiB answers), peak 117 MiB with 256 open streams on top. What is not the
# cache's bound (allocator, entry bookkeeping, buffers) is carried over to another
# `cache.max_bytes`: the request must cover the full-cache RSS, the limit the peak.
MEASURED_CACHE_MIB = 64
MEASURED_FULL_CACHE_RSS_MIB = 103
MEASURED_PEAK_RSS_MIB = 117

RULES_HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by `python3 scripts/check_k8s.py --write-rules`
# (scripts/test.sh fails while the two differ): edit alerts.yml, then regenerate.
# kube-prometheus-stack selects rules by its release label: add it to metadata.labels if
# yours does (e.g. `release: kube-prometheus-stack`).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: deliberate
  labels:
    app.kubernetes.io/name: deliberate
spec:
"""


class Problems(list):
    def need(self, ok: bool, message: str) -> bool:
        if not ok:
            self.append(message)
        return ok


def generated_rules() -> str:
    """alerts.yml under `spec:`, comments and all, indented two spaces."""
    lines = ALERTS.read_text().splitlines()
    return RULES_HEADER + "".join(f"  {line}\n" if line.strip() else "\n" for line in lines)


def render(kubectl: str) -> list[dict]:
    try:
        run = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True,
                             text=True, timeout=60)
    except FileNotFoundError:
        sys.exit(f"check_k8s: {kubectl} not found (its built-in kustomize renders deploy/k8s)")
    if run.returncode != 0:
        sys.exit(f"check_k8s: {kubectl} kustomize failed (exit {run.returncode}):\n"
                 f"{run.stdout[-2000:]}{run.stderr}")
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def selects(selector: dict | None, labels: dict) -> bool:
    wanted = (selector or {}).get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(quantity))
    if not match:
        raise ValueError(f"memory quantity {quantity!r}: use Ki, Mi or Gi")
    scale = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, None: 1 / 2**20}[match.group(2)]
    return int(match.group(1)) * scale


def check_schemas(objects: list[dict], problems: Problems) -> None:
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.need((obj["apiVersion"], obj["kind"]) in OPERATOR_KINDS,
                              f"{name}: no schema for {obj['apiVersion']} in Kubernetes {version}")
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{name} (Kubernetes {version}): {e.message} at "
                                f"{'.'.join(str(p) for p in e.path)}")


def check_rules(objects: list[dict], problems: Problems) -> None:
    problems.need(RULES.read_text() == generated_rules(),
                  f"{RULES.relative_to(ROOT)} differs from what {ALERTS.relative_to(ROOT)} "
                  "generates: run `python3 scripts/check_k8s.py --write-rules`")
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    if problems.need(len(rules) == 1, "expected one PrometheusRule in the output"):
        problems.need(rules[0]["spec"] == yaml.safe_load(ALERTS.read_text()),
                      "the PrometheusRule's spec is not alerts.yml")


def check_objects(objects: list[dict], problems: Problems, version: str) -> dict:
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
        if obj["kind"] != "Namespace":
            problems.need(obj["metadata"].get("namespace") == NAMESPACE,
                          f"{obj['kind']}/{obj['metadata']['name']}: not in namespace {NAMESPACE}")
    problems.need([n["metadata"]["name"] for n in by_kind.get("Namespace", [])] == [NAMESPACE],
                  f"the output must create the Namespace {NAMESPACE}")
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    gateway = deployments.get("deliberate")
    if not problems.need(gateway is not None, "no Deployment `deliberate`"):
        return {}
    pod = gateway["spec"]["template"]
    problems.need(pod["metadata"]["labels"] == POD_LABELS | pod["metadata"]["labels"],
                  "the gateway pods lack the app label")
    problems.need("replicas" not in gateway["spec"], "Deployment sets `replicas`: the HPA owns it")
    problems.need(not pod["metadata"].get("annotations", {}).get("prometheus.io/scrape"),
                  "pod scrape annotations and a ServiceMonitor would scrape twice")

    for deployment in deployments.values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            image = container["image"]
            pinned = "@sha256:" in image or re.search(r":[^/:]+$", image)
            problems.need(bool(pinned) and not image.endswith(":latest"),
                          f"{deployment['metadata']['name']}: image `{image}` is not pinned")
    container = pod["spec"]["containers"][0]
    problems.need(container["image"] in (f"deliberate:{version}",)
                  or container["image"].split("@")[0].endswith(f":{version}")
                  or "@sha256:" in container["image"],
                  f"gateway image `{container['image']}`: tag it with the crate version {version}")

    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    problems.need(any(h["spec"]["scaleTargetRef"]["name"] == "deliberate"
                      and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
                      and h["spec"].get("minReplicas", 1) >= 2 for h in hpas),
                  "no HPA with minReplicas >= 2 scales Deployment/deliberate")
    problems.need(any(selects(p["spec"]["selector"], pod["metadata"]["labels"])
                      for p in by_kind.get("PodDisruptionBudget", [])),
                  "no PodDisruptionBudget selects the gateway pods")
    problems.need(any(selects(n["spec"]["podSelector"], pod["metadata"]["labels"])
                      and {"Ingress", "Egress"} <= set(n["spec"].get("policyTypes", []))
                      for n in by_kind.get("NetworkPolicy", [])),
                  "no NetworkPolicy (ingress and egress) selects the gateway pods")
    services = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == "deliberate"]
    monitors = by_kind.get("ServiceMonitor", [])
    if problems.need(len(services) == 1 and len(monitors) == 1,
                     "expected one Service and one ServiceMonitor `deliberate`"):
        service, monitor = services[0], monitors[0]
        problems.need(selects(monitor["spec"].get("selector"), service["metadata"]["labels"]),
                      "the ServiceMonitor does not select the Service")
        port_names = {p.get("name") for p in service["spec"]["ports"]}
        endpoints = monitor["spec"].get("endpoints") or [{}]
        problems.need(all(e.get("port") in port_names and e.get("path", "/metrics") == "/metrics"
                          for e in endpoints),
                      f"ServiceMonitor endpoints must name a Service port {sorted(port_names)}")
    return {"pod": pod, "container": container,
            "configmaps": {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}}


def check_config_mounts(found: dict, problems: Problems, binary: Path | None) -> None:
    pod, container, configmaps = found["pod"], found["container"], found["configmaps"]
    args = container.get("args", [])
    config_path = Path(args[args.index("--config") + 1])
    policies_path = Path(args[args.index("--policies") + 1])
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    mounts = {Path(m["mountPath"]): m for m in container.get("volumeMounts", [])}
    for mount_path, configmap, what in ((config_path.parent, "deliberate-config", "config"),
                                        (policies_path, "deliberate-tenants", "policies")):
        mount = mounts.get(mount_path)
        if not problems.need(mount is not None, f"nothing mounted at {mount_path} ({what})"):
            continue
        volume = volumes[mount["name"]].get("configMap", {})
        problems.need(volume.get("name") == configmap,
                      f"{mount_path} must be the ConfigMap {configmap}")
        problems.need("items" not in volume and "subPath" not in mount,
                      f"{mount_path}: mount the ConfigMap whole (no items, no subPath)")
    tenants = configmaps.get("deliberate-tenants", {}).get("data", {})
    on_disk = sorted(p.name for p in (K8S / "tenants").glob("*.toml"))
    problems.need(sorted(tenants) == on_disk,
                  f"deliberate-tenants holds {sorted(tenants)}, deploy/k8s/tenants has {on_disk}")
    config_text = configmaps.get("deliberate-config", {}).get("data", {}).get(config_path.name)
    if not problems.need(config_text is not None, f"deliberate-config has no {config_path.name}"):
        return
    problems.need("needs no restart" in config_text,
                  f"{config_path.name} must tell its readers that a ConfigMap update reloads "
                  "without a restart")
    cache_mib = tomllib.loads(config_text).get("cache", {}).get("max_bytes", 64 * 2**20) / 2**20
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    request = container.get("resources", {}).get("requests", {}).get("memory")
    if problems.need(limit is not None and request is not None, "set memory requests and limits"):
        peak = MEASURED_PEAK_RSS_MIB - MEASURED_CACHE_MIB + cache_mib
        full = MEASURED_FULL_CACHE_RSS_MIB - MEASURED_CACHE_MIB + cache_mib
        problems.need(mebibytes(limit) >= peak,
                      f"memory limit {limit} < the measured peak RSS with a {cache_mib:.0f} MiB "
                      f"cache ({peak:.0f} MiB)")
        problems.need(mebibytes(request) >= full,
                      f"memory request {request} < the measured RSS with a full "
                      f"{cache_mib:.0f} MiB cache ({full:.0f} MiB)")
    if binary is not None:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "policies").mkdir()
            (Path(tmp) / config_path.name).write_text(config_text)
            for name, text in tenants.items():
                (Path(tmp) / "policies" / name).write_text(text)
            run = subprocess.run([str(binary), "check", str(Path(tmp) / config_path.name),
                                  str(Path(tmp) / "policies")],
                                 capture_output=True, text=True, timeout=60)
            problems.need(run.returncode == 0, f"deliberate check: {run.stdout}{run.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, help="gateway binary for `deliberate check`")
    parser.add_argument("--kubectl", default="kubectl",
                        help="the kubectl whose built-in kustomize renders deploy/k8s")
    parser.add_argument("--write-rules", action="store_true",
                        help=f"write {RULES.relative_to(ROOT)} from {ALERTS.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.write_rules:
        RULES.write_text(generated_rules())
        print(f"wrote {RULES.relative_to(ROOT)}")
        return 0
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    objects = render(args.kubectl)
    problems = Problems()
    check_schemas(objects, problems)
    check_rules(objects, problems)
    found = check_objects(objects, problems, version)
    if found:
        check_config_mounts(found, problems, args.bin)
    for problem in problems:
        print(f"check_k8s: {problem}", file=sys.stderr)
    if problems:
        return 1
    kinds = sorted({o["kind"] for o in objects})
    print(f"ok: {len(objects)} objects ({', '.join(kinds)}) valid for Kubernetes "
          f"{' and '.join(KUBERNETES_VERSIONS)}; PrometheusRule == alerts.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
