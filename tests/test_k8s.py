"""deploy/k8s/: every manifest validates against the Kubernetes API schema (kubernetes-validate,
strict: no unknown field), the TLS overlay's patch applies and validates too, and the pieces
refer to one another (selectors, ports, the Secret, the server's own options) correctly."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
kv = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"   # gRPC probes are GA since 1.27


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kust["resources"]) == files  # `kubectl apply -k` applies every manifest
    out = {}
    for name in files:
        for d in _docs(K8S / name):
            out[d["kind"]] = d
    return out


def _apply_json_patch(doc: dict, ops: list[dict]) -> dict:
    """RFC 6902 add / replace, the operations the overlay uses."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if op["op"] == "add" and isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), op["value"])
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                assert (int(last) < len(node)) if isinstance(node, list) else last in node, op["path"]
            node[int(last) if isinstance(node, list) else last] = op["value"]
        else:
            raise AssertionError(f"unsupported op {op['op']}")
    return doc


def _serve_args(container: dict) -> argparse.Namespace:
    """The container's args parsed by `splitinfer serve` itself (an unknown flag fails)."""
    from cloud_server import cli
    args = container["args"]
    assert args[:2] == ["splitinfer", "serve"]
    p = argparse.ArgumentParser(exit_on_error=False)
    cli.add_arguments(p)
    return p.parse_args(args[2:])


def test_every_manifest_validates(manifests):
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(manifests)
    for name in sorted(K8S.glob("*.yaml")):
        if name.name == "kustomization.yaml":
            continue
        for d in _docs(name):
            kv.validate(d, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kv.ValidationError):  # the validator does refuse a wrong manifest
        bad = copy.deepcopy(manifests["Deployment"])
        bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc-port"
        kv.validate(bad, KUBERNETES_VERSION, strict=True)


def test_the_tls_overlay_applies_and_validates(manifests):
    kust = yaml.safe_load((K8S / "tls" / "kustomization.yaml").read_text())
    assert kust["resources"] == [".."]
    (patch,) = kust["patches"]
    assert patch["target"]["kind"] == "Deployment" and patch["target"]["name"] == manifests["Deployment"]["metadata"]["name"]
    dep = _apply_json_patch(manifests["Deployment"], yaml.safe_load((K8S / "tls" / patch["path"]).read_text()))
    kv.validate(dep, KUBERNETES_VERSION, strict=True)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    a = _serve_args(c)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert a.tls_cert == f"{mounts['tls']}/tls.crt" and a.tls_key == f"{mounts['tls']}/tls.key"
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "splitinfer-tls"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        cmd = c[probe]["exec"]["command"]
        assert cmd[:3] == ["python", "-m", "cloud_server.health"]
        assert cmd[cmd.index("--tls-ca") + 1] == a.tls_cert and "--server-name" in cmd
        assert cmd[cmd.index("--addr") + 1] == f"127.0.0.1:{a.port}"


def test_the_pieces_fit(manifests):
    dep, hpa, pdb = manifests["Deployment"], manifests["HorizontalPodAutoscaler"], manifests["PodDisruptionBudget"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    c = dep["spec"]["template"]["spec"]["containers"][0]
    a = _serve_args(c)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": a.port, "metrics": a.metrics_port} and a.host == a.metrics_host == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == a.port
    # the token: a Secret mounted read-only where --token-file points, and no way around it
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["token"]["secret"]["secretName"] == "splitinfer-token"
    (item,) = volumes["token"]["secret"]["items"]
    assert a.token_file == f"{mounts['token']['mountPath']}/{item['path']}" and mounts["token"]["readOnly"]
    assert not getattr(a, "no_auth", False) and not a.token
    # the workers follow the CPU limit, and the HPA scales on CPU against a CPU request
    assert a.workers == 0 and "cpu" in c["resources"]["requests"] and "cpu" in c["resources"]["limits"]
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > a.grace_s
    services = [d for p in K8S.glob("service*.yaml") for d in _docs(p)]
    assert {s["spec"].get("clusterIP") for s in services} == {None, "None"}  # a headless and a ClusterIP
    for s in services:
        assert s["spec"]["selector"].items() <= labels.items()
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in ports
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
