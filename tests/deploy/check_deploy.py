#!/usr/bin/env python3
"""Checks of the deployment artifacts: the Helm chart, the Prometheus alerts and the Grafana dashboard.

No Kubernetes API server can run here, so the chart is checked the way an API server would see it:
`helm lint`, `helm template` for every documented value set (tests/deploy/values/), every rendered object
validated against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields are errors), and
the fields that make the cluster work asserted one by one (replicas, ordinals, volumes, certificates, probes,
ports, disruption budget, anti-affinity, network policy). The alerts go through `promtool check rules`; the
dashboard's and the alerts' queries may only name metrics that the Rust code exports.

Run by scripts/test.sh (tools from tests/deploy/setup_tools.sh). Prints one line per check and ends with
"N passed, N failed"; exits non-zero when a check fails.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import traceback
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mailraft"
VALUES = Path(__file__).resolve().parent / "values"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "mailraft.json"
TOOLS = Path(os.environ.get("MAILRAFT_TOOLS", Path.home() / ".cache" / "mailraft-tools"))
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.28.0", kubernetes_validate.utils.latest_version()]
# Objects of CRDs (no schema in kubernetes-validate): checked field by field below instead.
CRD_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")
# Metrics that alerts may use although Mailraft does not export them (Prometheus's own, kubelet's).
EXTERNAL_METRICS = {"up", "kubelet_volume_stats_available_bytes", "kubelet_volume_stats_capacity_bytes"}
NAMESPACE = "mail"
RELEASE = "mr"

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def helm_bin():
    found = sorted(TOOLS.glob("helm-*/helm")) or [Path(p) for p in [shutil.which("helm")] if p]
    if not found:
        raise AssertionError(f"helm not found under {TOOLS}: run tests/deploy/setup_tools.sh")
    return str(found[-1])


def run(cmd, ok=True):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


# ---------------------------------------------------------------- rendering


class Render:
    """The objects `helm template` renders for one value set, by kind and name."""

    def __init__(self, docs):
        self.docs = [d for d in docs if d]
        self.by_kind = {}
        for d in self.docs:
            self.by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    def get(self, kind, name):
        objs = self.by_kind.get(kind, {})
        assert name in objs, f"no {kind} {name}; have {sorted(objs)}"
        return objs[name]

    def all(self, kind):
        return list(self.by_kind.get(kind, {}).values())


def render(values_files=(), sets=(), upgrade=False):
    cmd = [helm_bin(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for f in values_files:
        cmd += ["-f", str(VALUES / f)]
    for s in sets:
        cmd += ["--set", s]
    if upgrade:
        cmd.append("--is-upgrade")
    return Render(yaml.safe_load_all(run(cmd).stdout))


def render_fails(*args, expect, **kwargs):
    """Renders that must be refused, with `expect` in helm's message."""
    try:
        render(*args, **kwargs)
    except AssertionError as e:
        assert expect in str(e), f"refused, but not for {expect!r}: {e}"
        return
    raise AssertionError(f"rendered although it should fail with {expect!r}")


def fullname(suffix):
    return f"{RELEASE}-mailraft-{suffix}"


def node_host(node_id):
    pod = fullname("seed") + "-1" if node_id == 1 else f"{fullname('storage')}-{node_id}"
    return f"{pod}.{fullname('peers')}.{NAMESPACE}.svc.cluster.local"


def container(workload, name):
    spec = pod_template(workload)["spec"]
    for c in spec.get("initContainers", []) + spec["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"{workload['metadata']['name']} has no container {name}")


def env(c):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def volume(workload, name):
    vols = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    assert name in vols, f"{workload['metadata']['name']} has no volume {name}"
    return vols[name]


def projected_files(vol):
    """(secret, key, path) of a projected volume."""
    return [(s["secret"]["name"], i["key"], i["path"]) for s in vol["projected"]["sources"] for i in s["secret"]["items"]]


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


# ---------------------------------------------------------------- generic object checks


def validate_objects(r):
    """Every built-in object against the API schemas; CRD objects against their essentials."""
    for doc in r.docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            check_crd_object(doc)
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                raise AssertionError(f"{doc['kind']} {doc['metadata']['name']} invalid for {version} at {path}: {e.message}")


def check_crd_object(doc):
    kind, spec = doc["kind"], doc.get("spec", {})
    name = doc["metadata"]["name"]
    if kind == "Certificate":
        assert spec.get("secretName") and spec.get("issuerRef", {}).get("name"), f"Certificate {name}: secret/issuer"
        assert spec.get("uris") or spec.get("dnsNames") or spec.get("commonName"), f"Certificate {name}: no names"
    elif kind == "Issuer":
        assert ("selfSigned" in spec) != ("ca" in spec), f"Issuer {name}: selfSigned or ca"
    elif kind == "ServiceMonitor":
        assert spec["endpoints"] and spec["selector"]["matchLabels"], f"ServiceMonitor {name}"
    elif kind == "PrometheusRule":
        assert spec["groups"], f"PrometheusRule {name} has no groups"
    else:
        raise AssertionError(f"unexpected custom resource {kind}")


def pod_template(w):
    """The pod template of a workload (a CronJob's is inside its jobTemplate)."""
    return w["spec"]["jobTemplate"]["spec"]["template"] if w["kind"] == "CronJob" else w["spec"]["template"]


def check_pod_specs(r):
    """What every Mailraft pod needs: resources, a non-root read-only container, probes on real ports."""
    workloads = r.all("StatefulSet") + r.all("Deployment") + r.all("Job") + r.all("CronJob")
    for w in workloads:
        spec = pod_template(w)["spec"]
        assert spec["automountServiceAccountToken"] is False, w["metadata"]["name"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{w['metadata']['name']}/{c['name']}"
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], f"{where}: requests"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"], where
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if w["kind"] in ("Job", "CronJob"):
                    continue
                assert probe in c, f"{where}: no {probe}"
                port = c[probe]["httpGet"]["port"]
                assert port in ports, f"{where}: {probe} on unknown port {port}"
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            vols = {v["name"] for v in spec.get("volumes", [])}
            vols |= {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            assert mounts <= vols, f"{where}: mounts {mounts - vols} have no volume"


def check_config_keys(r):
    """Keys of the rendered mailraft.toml and of the chart's MAILRAFT_* variables exist (deny_unknown_fields)."""
    known = tomllib.loads((ROOT / "mailraft.example.toml").read_text())
    rendered = tomllib.loads(r.get("ConfigMap", fullname("config"))["data"]["mailraft.toml"])
    for section, keys in rendered.items():
        assert section in known, f"config: unknown section [{section}]"
        for key in keys:
            assert key in known[section], f"config: unknown key {section}.{key}"
    for w in r.all("StatefulSet") + r.all("Deployment"):
        for c in w["spec"]["template"]["spec"]["containers"]:
            for name in env(c):
                if name.startswith("MAILRAFT_") and "__" in name:
                    section, key = name[len("MAILRAFT_"):].lower().split("__", 1)
                    assert key in known.get(section, {}), f"{c['name']}: {name} is not a configuration key"


# ---------------------------------------------------------------- the storage tier


def check_storage(r, replicas, cert_manager=True, storage_secret=None):
    seed = r.get("StatefulSet", fullname("seed"))
    members = r.by_kind["StatefulSet"].get(fullname("storage"))
    assert seed["spec"]["replicas"] == 1 and seed["spec"]["ordinals"]["start"] == 1, "seed is node 1 only"
    if replicas == 1:
        assert members is None, "one node: no members StatefulSet"
    else:
        assert members["spec"]["replicas"] == replicas - 1, f"members replicas {members['spec']['replicas']}"
        assert members["spec"]["ordinals"]["start"] == 2, "members start at node 2"
    sets = [(seed, [1], True)] + ([(members, list(range(2, replicas + 1)), False)] if members else [])
    for sts, ids, bootstrap in sets:
        name = sts["metadata"]["name"]
        spec = sts["spec"]
        assert spec["serviceName"] == fullname("peers")
        assert spec["podManagementPolicy"] == "Parallel", f"{name}: a full restart needs every node at once"
        # Both sets rolling at once could stop two voters: only the members roll by themselves.
        assert spec["updateStrategy"]["type"] == ("OnDelete" if bootstrap else "RollingUpdate"), name
        assert spec["minReadySeconds"] >= 10, f"{name}: no time to catch up between rolled pods"
        assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
        labels = spec["template"]["metadata"]["labels"]
        assert labels_match(spec["selector"], labels), f"{name}: selector does not match its pods"
        (vct,) = spec["volumeClaimTemplates"]
        assert vct["metadata"]["name"] == "data" and vct["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert vct["spec"]["resources"]["requests"]["storage"]
        c = container(sts, "storage")
        assert ("--bootstrap" in c["args"]) == bootstrap, f"{name}: --bootstrap only on the seed"
        assert c["args"][0] == "storage"
        e = env(c)
        assert e["MAILRAFT_NODE__ID"] == {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}
        assert e["MAILRAFT_NODE__DATA_DIR"].startswith("/var/lib/mailraft/")
        assert any(m["name"] == "data" and m["mountPath"] == "/var/lib/mailraft" for m in c["volumeMounts"])
        assert e["MAILRAFT_NODE__ADVERTISE_ADDR"] == (
            f"https://$(POD_NAME).{fullname('peers')}.{NAMESPACE}.svc.cluster.local:50051")
        assert e["MAILRAFT_TLS__CERT"] == "/etc/mailraft/grpc/node-$(MAILRAFT_NODE__ID).pem"
        assert e["MAILRAFT_TLS__KEY"] == "/etc/mailraft/grpc/node-$(MAILRAFT_NODE__ID)-key.pem"
        assert e["MAILRAFT_TELEMETRY__METRICS_ADDR"] == "0.0.0.0:9100"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"grpc": 50051, "admin": 50061, "metrics": 9100}, ports
        # Readiness is "caught up with the leader" (/ready); liveness and startup only "the process runs".
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}, c["readinessProbe"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/health" and c["startupProbe"]["httpGet"]["path"] == "/health"
        assert c["readinessProbe"]["timeoutSeconds"] > 3, "the check may take 3 s before it answers 503"
        files = projected_files(volume(sts, "grpc-tls"))
        paths = sorted(p for _, _, p in files)
        want = sorted(["ca.pem"] + [f"node-{i}.pem" for i in ids] + [f"node-{i}-key.pem" for i in ids])
        assert paths == want, f"{name}: mounts {paths}, want exactly its own nodes' keys {want}"
        for secret, key, path in files:
            if cert_manager:
                node = int(re.match(r"node-(\d+)", path).group(1)) if path != "ca.pem" else ids[0]
                assert secret == f"{fullname('node')}-{node}-tls", f"{path} from {secret}"
                assert key == {"ca.pem": "ca.crt"}.get(path, "tls.key" if path.endswith("-key.pem") else "tls.crt")
            else:
                assert secret == storage_secret and key == path, (secret, key, path)
        anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
        terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [
            t["podAffinityTerm"] for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]]
        assert terms[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "storage"
        assert terms[0]["topologyKey"] == "kubernetes.io/hostname"
    pdb = r.get("PodDisruptionBudget", fullname("storage"))
    assert pdb["spec"]["maxUnavailable"] == 1, "never more than one storage node down"
    for sts, _, _ in sets:
        assert labels_match(pdb["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"]), "PDB covers all"
    peers = r.get("Service", fullname("peers"))
    assert peers["spec"]["clusterIP"] == "None" and peers["spec"]["publishNotReadyAddresses"] is True


def check_join(r, ids, hook):
    jobs = r.all("Job")
    if not ids:
        assert not jobs, "no join Job expected"
        return
    (job,) = jobs
    assert job["metadata"]["annotations"]["helm.sh/hook"] == hook
    inits = job["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits] == [f"add-node-{i}" for i in ids], "one add-node per id, in order"
    for c, i in zip(inits, ids):
        assert c["args"][0] == "admin" and f"--endpoint=https://{node_host(1)}:50061" in c["args"]
        assert c["args"][-3:] == ["add-node", str(i), f"https://{node_host(i)}:50051"], c["args"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "join"


def check_certificates(r, replicas, issuer=None):
    certs = {c["metadata"]["name"]: c["spec"] for c in r.all("Certificate")}
    for i in range(1, replicas + 1):
        spec = certs[fullname(f"node-{i}")]
        assert spec["uris"] == [f"spiffe://mailraft/node/{i}"], spec["uris"]
        assert node_host(i) in spec["dnsNames"], f"node {i} certificate lacks its advertised host"
        assert "server auth" in spec["usages"] and "client auth" in spec["usages"]
        assert spec["secretName"] == f"{fullname('node')}-{i}-tls"
        assert spec["privateKey"]["encoding"] == "PKCS8"
        if issuer:
            assert spec["issuerRef"]["name"] == issuer
    assert fullname(f"node-{replicas + 1}") not in certs
    fe = certs[fullname("frontend")]
    assert fe["uris"] == ["spiffe://mailraft/frontend/imap"] and "server auth" not in fe["usages"]
    assert certs[fullname("operator")]["uris"] == ["spiffe://mailraft/operator/helm"]
    issuers = {i["metadata"]["name"] for i in r.all("Issuer")}
    assert issuers == (set() if issuer else {fullname("selfsigned"), fullname("ca")}), issuers


# ---------------------------------------------------------------- the front-ends


def check_frontend(r, replicas, autoscaling, imaps_secret):
    dep = r.get("Deployment", fullname("frontend"))
    c = container(dep, "frontend")
    if autoscaling:
        assert "replicas" not in dep["spec"], "the HPA owns replicas"
        hpa = r.get("HorizontalPodAutoscaler", fullname("frontend"))
        assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2
    else:
        assert dep["spec"]["replicas"] == replicas and not r.all("HorizontalPodAutoscaler")
    e = env(c)
    urls = e["MAILRAFT_STORAGE__ENDPOINTS"].split(",")
    assert urls == [f"https://{node_host(i)}:50051" for i in range(1, len(urls) + 1)], urls
    assert e["MAILRAFT_TLS__CERT"] == "/etc/mailraft/grpc/frontend-imap.pem"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    svc = r.get("Service", fullname("imap"))
    svc_ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert svc_ports["imap"] == (143, "imap") and ports["imap"] == 1143
    if imaps_secret:
        assert svc_ports["imaps"] == (993, "imaps") and ports["imaps"] == 1993
        assert volume(dep, "imap-tls")["secret"]["secretName"] == imaps_secret
        assert e["MAILRAFT_IMAP__TLS_CERT"] == "/etc/mailraft/imap/tls.crt"
    else:
        assert "imaps" not in svc_ports and "imaps" not in ports and e["MAILRAFT_IMAP__TLS_ADDR"] == ""
    assert labels_match({"matchLabels": svc["spec"]["selector"]}, dep["spec"]["template"]["metadata"]["labels"])


def check_network_policy(r, enabled, backup=False, lmtp_from=None):
    pols = {p["metadata"]["name"]: p["spec"] for p in r.all("NetworkPolicy")}
    if not enabled:
        assert not pols, "networkPolicy.enabled=false renders none"
        return
    storage = pols[fullname("storage")]
    by_port = {rule["ports"][0]["port"]: rule.get("from") for rule in storage["ingress"]}
    grpc_from = {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in by_port["grpc"]}
    assert grpc_from == {"storage", "frontend"}, f"peer port open to {grpc_from}"
    assert all(p["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE for p in by_port["grpc"])
    admin_from = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in by_port["admin"]]
    assert admin_from == (["join", "backup"] if backup else ["join"]), admin_from
    assert "metrics" in by_port
    frontend = pols[fullname("frontend")]
    assert frontend["policyTypes"] == ["Ingress"]
    lmtp_rules = [rule for rule in frontend["ingress"] if any(p["port"] == "lmtp" for p in rule["ports"])]
    if lmtp_from is None:
        assert not lmtp_rules, "no LMTP rule without lmtp.enabled"
    else:
        (rule,) = lmtp_rules
        assert [p["port"] for p in rule["ports"]] == ["lmtp"], "the LMTP rule opens LMTP only"
        assert rule["from"] == lmtp_from, rule["from"]


def check_lmtp(r, enabled, hostname=None):
    dep = r.get("Deployment", fullname("frontend"))
    c = container(dep, "frontend")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    e = env(c)
    svc = r.by_kind.get("Service", {}).get(fullname("lmtp"))
    if not enabled:
        assert "lmtp" not in ports and "MAILRAFT_LMTP__ADDR" not in e and svc is None, "LMTP is opt-in"
        return
    assert ports["lmtp"] == 1024 and e["MAILRAFT_LMTP__ADDR"] == "0.0.0.0:1024", (ports, e)
    assert e.get("MAILRAFT_LMTP__HOSTNAME") == hostname
    # No authentication on LMTP: never a LoadBalancer or NodePort.
    assert svc["spec"]["type"] == "ClusterIP", svc["spec"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("lmtp", 24, "lmtp")]
    assert labels_match({"matchLabels": svc["spec"]["selector"]}, dep["spec"]["template"]["metadata"]["labels"])
    imap = r.get("Service", fullname("imap"))
    assert all(p["name"] != "lmtp" for p in imap["spec"]["ports"]), "LMTP must not be on the public IMAP Service"


def check_backup(r, enabled, schedule=None, keep=None, claim=None, created_claim=False, operator="helm"):
    cron = r.by_kind.get("CronJob", {}).get(fullname("backup"))
    pvc = r.by_kind.get("PersistentVolumeClaim", {}).get(fullname("backup"))
    if not enabled:
        assert cron is None and pvc is None, "the backup CronJob is opt-in"
        return
    spec = cron["spec"]
    assert spec["schedule"] == schedule and spec["concurrencyPolicy"] == "Forbid", spec
    pod = pod_template(cron)
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "backup", "the NetworkPolicy admits this label"
    assert pod["spec"]["restartPolicy"] in ("Never", "OnFailure")
    c = container(cron, "backup")
    assert c["args"][0] == "admin" and f"--endpoint=https://{node_host(1)}:50061" in c["args"], c["args"]
    assert f"--tls-name=operator-{operator}" in c["args"] and "--tls-dir=/etc/mailraft/operator" in c["args"]
    i = c["args"].index("backup")
    # Time-stamped files with retention (issue 10), never one file replaced by --force.
    assert c["args"][i + 1:] == ["--dir=/backup", f"--keep={keep}"], c["args"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"operator-tls": "/etc/mailraft/operator", "backup": "/backup"}, mounts
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["backup"]["persistentVolumeClaim"]["claimName"] == claim
    files = [p for _, _, p in projected_files(vols["operator-tls"])]
    assert files == ["ca.pem", f"operator-{operator}.pem", f"operator-{operator}-key.pem"], files
    if created_claim:
        assert pvc["metadata"]["name"] == claim and pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert pvc["spec"]["resources"]["requests"]["storage"]
    else:
        assert pvc is None, "an existing claim: none created"


# ---------------------------------------------------------------- checks: the chart


@check
def helm_lint():
    run([helm_bin(), "lint", "--strict", str(CHART)])
    for f in sorted(VALUES.glob("*.yaml")):
        run([helm_bin(), "lint", "--strict", str(CHART), "-f", str(f)])


@check
def chart_defaults():
    r = render()
    validate_objects(r)
    check_pod_specs(r)
    check_config_keys(r)
    check_storage(r, 3)
    check_join(r, [2, 3], "post-install")
    check_certificates(r, 3)
    check_frontend(r, None, autoscaling=True, imaps_secret=None)
    check_network_policy(r, True)
    check_lmtp(r, False)
    check_backup(r, False)
    assert not r.all("ServiceMonitor") and not r.all("PrometheusRule"), "monitoring objects are opt-in"


@check
def chart_external_secrets():
    r = render(["external-secrets.yaml"])
    validate_objects(r)
    check_pod_specs(r)
    check_config_keys(r)
    assert not r.all("Certificate") and not r.all("Issuer"), "no cert-manager objects without cert-manager"
    check_storage(r, 3, cert_manager=False, storage_secret="mailraft-storage-certs")
    check_frontend(r, None, autoscaling=True, imaps_secret="imap-example-org-tls")
    fe = projected_files(volume(r.get("Deployment", fullname("frontend")), "grpc-tls"))
    assert fe == [("mailraft-frontend-certs", k, k) for k in ("ca.pem", "frontend-imap.pem", "frontend-imap-key.pem")]
    job = r.get("Job", fullname("join"))
    assert "--tls-name=operator-admin" in container(job, "add-node-2")["args"]
    assert projected_files(volume(job, "operator-tls"))[1] == ("mailraft-operator-certs", "operator-admin.pem",
                                                               "operator-admin.pem")
    assert container(r.get("StatefulSet", fullname("seed")), "storage")["image"] == "registry.example.org/mailraft:0.1.0"
    sm = r.get("ServiceMonitor", f"{RELEASE}-mailraft")
    assert sm["spec"]["jobLabel"] == "mailraft.io/job" and sm["spec"]["endpoints"][0]["port"] == "metrics"
    metrics_svc = r.get("Service", fullname("metrics"))
    assert metrics_svc["metadata"]["labels"]["mailraft.io/job"] == "mailraft"
    assert labels_match(sm["spec"]["selector"], metrics_svc["metadata"]["labels"])
    for w in r.all("StatefulSet") + r.all("Deployment"):
        assert metrics_svc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
    rule = r.get("PrometheusRule", f"{RELEASE}-mailraft")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"], "PrometheusRule != alerts.yml"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    toml = tomllib.loads(r.get("ConfigMap", fullname("config"))["data"]["mailraft.toml"])
    assert toml["imap"]["max_connections"] == 20000 and toml["raft"]["snapshot_logs_since_last"] == 10000


@check
def chart_five_nodes_without_network_policy():
    r = render(["five-nodes.yaml"])
    validate_objects(r)
    check_pod_specs(r)
    check_storage(r, 5)
    check_join(r, [2, 3, 4, 5], "post-install")
    check_certificates(r, 5, issuer="mailraft-ca")
    check_frontend(r, 3, autoscaling=False, imaps_secret=fullname("imap-tls"))
    check_network_policy(r, False)
    imap = r.get("Certificate", fullname("imap"))["spec"]
    assert imap["dnsNames"] == ["imap.example.org"] and imap["issuerRef"]["name"] == "letsencrypt"
    members = r.get("StatefulSet", fullname("storage"))["spec"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in members["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert members["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    assert members["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "100Gi"


@check
def chart_scale_out_upgrade_and_single_node():
    r = render(["scale-out-upgrade.yaml"], upgrade=True)
    validate_objects(r)
    check_storage(r, 5)
    check_join(r, [4, 5], "post-upgrade")
    r = render(["scale-out-upgrade.yaml"], sets=["storage.join.add=null"], upgrade=True)
    check_join(r, [], None)
    r = render(["single-node.yaml"])
    validate_objects(r)
    check_pod_specs(r)
    check_storage(r, 1)
    check_join(r, [], None)
    check_frontend(r, 1, autoscaling=False, imaps_secret=None)


@check
def chart_lmtp_and_backup():
    r = render(["lmtp-backup.yaml"])
    validate_objects(r)
    check_pod_specs(r)
    check_config_keys(r)
    check_storage(r, 3)
    mta = yaml.safe_load((VALUES / "lmtp-backup.yaml").read_text())["lmtp"]["from"]
    check_network_policy(r, True, backup=True, lmtp_from=mta)
    check_lmtp(r, True, hostname="mx.example.org")
    check_backup(r, True, schedule="30 2 * * *", keep=14, claim="mailraft-backups")
    assert r.get("CronJob", fullname("backup"))["spec"]["timeZone"] == "Europe/Berlin"
    # Defaults of the two features: a created, kept claim; LMTP open to the namespace only.
    r = render(sets=["backup.enabled=true", "lmtp.enabled=true"])
    validate_objects(r)
    check_pod_specs(r)
    check_backup(r, True, schedule="17 3 * * *", keep=7, claim=fullname("backup"), created_claim=True)
    check_lmtp(r, True)
    check_network_policy(r, True, backup=True, lmtp_from=[{"podSelector": {}}])
    # With certificates from Secrets, the CronJob uses the operator Secret like the join Job.
    r = render(["external-secrets.yaml"], sets=["backup.enabled=true"])
    validate_objects(r)
    check_backup(r, True, schedule="17 3 * * *", keep=7, claim=fullname("backup"), created_claim=True,
                 operator="admin")
    cron_tls = [v for v in pod_template(r.get("CronJob", fullname("backup")))["spec"]["volumes"] if v["name"] == "operator-tls"]
    assert projected_files(cron_tls[0])[1] == ("mailraft-operator-certs", "operator-admin.pem", "operator-admin.pem")


@check
def chart_refuses_unsafe_values():
    render_fails(sets=["storage.podDisruptionBudget.maxUnavailable=2"], expect="Raft quorum")
    # values.schema.json: a misspelt key or an unknown choice is refused instead of silently ignored.
    render_fails(sets=["storage.replica=5"], expect="replica")
    render_fails(sets=["storage.antiAffinity=sometimes"], expect="antiAffinity")
    render_fails(sets=["backup.enabled=true", "backup.keep=0"], expect="backup.keep")
    # The former single-file value is refused, not silently ignored (values.yaml says what replaced it).
    render_fails(sets=["backup.enabled=true", "backup.file=mailraft.backup"], expect="file")
    render_fails(sets=["lmtp.enable=true"], expect="enable")
    render_fails(sets=["storage.join.add={7}"], upgrade=True, expect="storage.join.add")
    render_fails(sets=["tls.grpc.certManager.enabled=false"], expect="tls.grpc.existingSecrets")
    render_fails(sets=["tls.imap.certManager.enabled=true", "tls.imap.certManager.issuerRef.name=x"],
                 expect="tls.imap.certManager.dnsNames")


# ---------------------------------------------------------------- checks: metrics, alerts, dashboard


def code_metrics():
    """Metric names the Rust code exports: `"mailraft_…"` literals outside test modules."""
    names = set()
    for path in (ROOT / "crates").glob("*/src/**/*.rs"):
        text = path.read_text()
        text = text.split("#[cfg(test)]", 1)[0]
        names.update(re.findall(r'"(mailraft_[a-z0-9_]+)"', text))
    assert len(names) > 30, f"found only {sorted(names)}"
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def promql_metrics(expr):
    """Metric names an expression selects: identifiers that are not functions, keywords or label names."""
    e = re.sub(r'"(\\.|[^"\\])*"', '""', expr)           # strings (label values)
    e = re.sub(r"\$\{?\w+\}?", "", e)                      # Grafana variables
    e = re.sub(r"\{[^}]*\}", "", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                       # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?[smhdwy]?\b", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def unknown_metrics(expr, known):
    out = set()
    for name in promql_metrics(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in known and base not in known:
            out.add(name)
    return out


@check
def promql_parser_sees_metrics():
    # The checks below rely on this extraction; a name it missed would pass unchecked.
    got = promql_metrics('histogram_quantile(0.99, sum by (le, job) (rate(x_seconds_bucket{a="b(c)"}[5m]))) '
                         '> on(instance) group_left y_total offset 5m and z{q=~"a|b"} / ignoring(kind) w')
    assert got == {"x_seconds_bucket", "y_total", "z", "w"}, got


@check
def alerts_promtool():
    run(["promtool", "check", "rules", str(ALERTS)])


@check
def alerts_use_exported_metrics():
    known = code_metrics() | EXTERNAL_METRICS
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert {"MailraftNoLeader", "MailraftFollowerLagging", "MailraftStorageNodeDown", "MailraftDiskNearlyFull",
            "MailraftImapErrorRate", "MailraftImapLatencyHigh"} <= {r["alert"] for r in rules}
    docs = (ROOT / "docs" / "OPERATIONS.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", docs, re.M)}
    for rule in rules:
        bad = unknown_metrics(rule["expr"], known)
        assert not bad, f"{rule['alert']} uses metrics the code does not export: {sorted(bad)}"
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/OPERATIONS.md" and anchor in anchors, f"{rule['alert']}: runbook {anchor!r} not a heading"
        assert rule["alert"] in docs, f"docs/OPERATIONS.md does not explain {rule['alert']}"
    assert (CHART / "files" / "alerts.yml").read_text() == ALERTS.read_text(), "the chart's alerts.yml differs"


def panels(dashboard):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


@check
def dashboard_uses_exported_metrics():
    known = code_metrics()
    dash = json.loads(DASHBOARD.read_text())
    ids, used = set(), set()
    for p in panels(dash):
        if p["type"] == "row":
            continue
        assert p["id"] not in ids, f"panel id {p['id']} repeated"
        ids.add(p["id"])
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", f"panel {p['title']!r}: datasource not the variable"
            names = promql_metrics(t["expr"])
            assert names, f"panel {p['title']!r}: no metric in {t['expr']!r}"
            bad = unknown_metrics(t["expr"], known)
            assert not bad, f"panel {p['title']!r} queries metrics the code does not export: {sorted(bad)}"
            used |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    for t in dash["templating"]["list"]:
        if t["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", t["definition"])
            assert m and m.group(1) in known, f"variable {t['name']}: {t['definition']!r}"
    assert len(ids) >= 20, f"only {len(ids)} panels"
    # PromQL syntax: promtool parses every query as a recording rule (Grafana's variables substituted).
    exprs = [t["expr"] for p in panels(dash) for t in p.get("targets", [])]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m").replace("$namespace", ".*")}
        for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        run(["promtool", "check", "rules", f.name])
    generated = subprocess.run([sys.executable, str(DASHBOARD.parent / "generate.py"), "--stdout"],
                               capture_output=True, text=True, check=True).stdout
    assert generated == DASHBOARD.read_text(), "mailraft.json is not generate.py's output: run it"
    print(f"    dashboard: {len(ids)} panels over {len(used)} of {len(known)} exported metrics")


@check
def compose_cluster_wiring():
    # deploy/compose.yaml without a Docker engine (the running cluster: tests/deploy/compose_test.py).
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import compose_static

    compose_static.check(ROOT)


def main():
    passed = failed = 0
    for fn in CHECKS:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next check runs
            failed += 1
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            print(f"FAIL  {fn.__name__}: {detail}")
        else:
            passed += 1
            print(f"ok    {fn.__name__}")
    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
