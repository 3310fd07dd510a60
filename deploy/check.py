#!/usr/bin/env python3
"""Offline checks of the container image and the Kubernetes manifests.

- Every resource in deploy/kubernetes validates against the Kubernetes schemas
  (kubernetes-validate, which ships them; --strict rejects unknown fields).
- Each kustomization lists files that exist, and every workload keeps the rules of
  docs/operations.md: probes on /healthz and /readyz, a grace period above the drain deadline
  of its configuration, resource requests and a memory limit, non-root with a read-only root
  filesystem and no privilege escalation, selectors that match their pods.
- The Dockerfile keeps its invariants: several stages with the dependency layer cached
  (cargo-chef), a non-root USER, HEALTHCHECK, EXPOSE of both ports, configuration by ENV only.

Run by scripts/validate-deploy.sh (and so by CI); exits non-zero with every problem listed.
"""

import pathlib
import re
import subprocess
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def check_schemas(files):
    validator = pathlib.Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run(
        [str(validator), "--strict", "--quiet", *map(str, files)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        problem("kubernetes-validate", result.stdout + result.stderr)


def drain_seconds(configmaps):
    for cm in configmaps:
        text = cm.get("data", {}).get("hexkv.toml")
        if text:
            shutdown = tomllib.loads(text).get("shutdown", {})
            return (shutdown.get("readiness_delay_ms", 0) + shutdown.get("drain_timeout_ms", 30000)) / 1000
    return 30.0


def check_workload(where, workload, configmaps):
    spec = workload["spec"]
    pod = spec["template"]
    labels = pod["metadata"].get("labels", {})
    for key, value in spec["selector"]["matchLabels"].items():
        if labels.get(key) != value:
            problem(where, f"selector {key}={value} does not match the pod labels")
    pod_spec = pod["spec"]
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    drain = drain_seconds(configmaps)
    if grace <= drain:
        problem(where, f"terminationGracePeriodSeconds {grace} is not above the drain deadline {drain}s")
    security = pod_spec.get("securityContext", {})
    if not security.get("runAsNonRoot"):
        problem(where, "the pod must run as non-root")
    for container in pod_spec["containers"]:
        name = f"{where} container {container['name']}"
        probes = {
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        for probe, path in probes.items():
            got = container.get(probe, {}).get("httpGet", {}).get("path")
            if got != path:
                problem(name, f"{probe} must GET {path}, not {got}")
        resources = container.get("resources", {})
        if not resources.get("requests") or "memory" not in resources.get("limits", {}):
            problem(name, "needs resource requests and a memory limit")
        sc = container.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
            problem(name, "needs readOnlyRootFilesystem and allowPrivilegeEscalation: false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problem(name, "must drop all capabilities")


def check_kustomizations():
    resources = []
    for kustomization in sorted(KUBE.glob("*/kustomization.yaml")):
        base = kustomization.parent
        listed = yaml.safe_load(kustomization.read_text()).get("resources", [])
        docs = []
        for entry in listed:
            path = base / entry
            if not path.is_file():
                problem(kustomization, f"lists {entry}, which does not exist")
                continue
            resources.append(path)
            docs.extend(documents(path))
        for path in base.glob("*.yaml"):
            if path.name != "kustomization.yaml" and path.name not in listed:
                problem(kustomization, f"does not list {path.name}")
        configmaps = [d for d in docs if d["kind"] == "ConfigMap"]
        kinds = {d["kind"] for d in docs}
        for doc in docs:
            if doc["kind"] in ("Deployment", "StatefulSet"):
                check_workload(f"{base.name}/{doc['kind']}", doc, configmaps)
        if base.name == "scalable":
            for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"):
                if kind not in kinds:
                    problem(base, f"misses a {kind}")
            if "secretKeyRef" not in (base / "deployment.yaml").read_text():
                problem(base, "the database URL must come from a Secret reference")
        if base.name == "single-node":
            for doc in docs:
                if doc["kind"] == "StatefulSet" and (
                    doc["spec"].get("replicas") != 1 or not doc["spec"].get("volumeClaimTemplates")
                ):
                    problem(base, "the StatefulSet needs one replica and a volume claim")
    return resources


def check_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    stages = [l for l in lines if l.upper().startswith("FROM ")]
    if len(stages) < 3:
        problem("Dockerfile", "must be a multi-stage build (planner, builder, runtime)")
    if "cargo chef cook" not in text:
        problem("Dockerfile", "the dependency layer must be cached with cargo chef cook")
    user = [l for l in lines if l.upper().startswith("USER ")]
    if not user or user[-1].split()[1].split(":")[0] in ("0", "root"):
        problem("Dockerfile", "the runtime must run as a non-root USER")
    for instruction in ("HEALTHCHECK", "EXPOSE", "ENTRYPOINT"):
        if not any(l.upper().startswith(instruction) for l in lines):
            problem("Dockerfile", f"misses {instruction}")
    exposed = " ".join(l for l in lines if l.upper().startswith("EXPOSE"))
    for port in ("8080", "50051"):
        if port not in exposed:
            problem("Dockerfile", f"must EXPOSE {port}")
    if re.search(r"--config\b", stages[-1] if stages else "") or "COPY hexkv.toml" in text:
        problem("Dockerfile", "the image is configured by environment only")
    ignore = (ROOT / ".dockerignore").read_text().split()
    for required in ("target/", ".git/"):
        if required not in ignore:
            problem(".dockerignore", f"must exclude {required}")


def main():
    files = check_kustomizations()
    check_schemas(files)
    check_dockerfile()
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"ok: {len(files)} manifests, the Dockerfile")


if __name__ == "__main__":
    main()
