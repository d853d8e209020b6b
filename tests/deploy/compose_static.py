"""Static checks of the compose cluster (deploy/compose.yaml) that need no Docker engine.

Called by check_deploy.py (`compose_cluster_wiring`). What the running cluster does is tests/deploy/compose_test.py's
job; this catches the wiring mistakes that would only show there, minutes later: a node whose certificate does not
name the host others reach it at, a node nobody adds, a front-end missing a storage endpoint or a certificate, a
process Prometheus does not scrape, a port that is not on loopback or not overridable, a second bootstrap node.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

NODE_ENV = "MAILRAFT_NODE__"


def interpolate(text, env):
    """Compose's `${VAR:-default}` / `${VAR}` substitution (the forms compose.yaml uses)."""
    def sub(m):
        name, default = m.group(1), m.group(3)
        value = env.get(name)
        return value if value else (default or "")
    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", sub, text)


def load(root, env=None):
    text = (root / "deploy" / "compose.yaml").read_text()
    return yaml.safe_load(interpolate(text, env or {}))


def published(service):
    """(host address, host port, container port) of each published port."""
    out = []
    for p in service.get("ports", []):
        parts = str(p).split(":")
        # "HOST_PORT:CONTAINER_PORT" publishes on every interface.
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((host_ip, int(parts[-2]), int(parts[-1])))
    return out


def check(root):
    root = Path(root)
    doc = load(root)
    assert "version" not in doc, "no `version:` key: compose v2 warns on it and 1.29 does not need it"
    services = doc["services"]
    storage = {n: s for n, s in services.items() if (s.get("command") or [None])[0] == "storage"}
    frontends = {n: s for n, s in services.items() if (s.get("command") or [None])[0] == "frontend"}
    assert len(storage) == 3 and len(frontends) == 2, (sorted(storage), sorted(frontends))

    certs_env = services["certs"]["environment"]
    cert_hosts = dict(e.split("=", 1) for e in certs_env["MAILRAFT_CERT_NODES"].split())
    frontend_certs = certs_env["MAILRAFT_CERT_FRONTENDS"].split()
    certs_dir = certs_env["MAILRAFT_CERTS_DIR"]

    # Storage: one founder, distinct ids and volumes, certificates naming the advertised hosts.
    founders = [n for n, s in storage.items() if "--bootstrap" in s["command"]]
    assert founders == ["storage-1"], f"exactly storage-1 bootstraps, not {founders}"
    peer_urls, volumes, metrics = {}, set(), {}
    for name, s in storage.items():
        env = s["environment"]
        node_id = env[NODE_ENV + "ID"]
        url = env[NODE_ENV + "ADVERTISE_ADDR"]
        host = re.fullmatch(r"https://([\w.-]+):(\d+)", url)
        assert host and host.group(1) == name, f"{name} advertises {url}, not its service name over https"
        assert host.group(2) == env[NODE_ENV + "GRPC_ADDR"].rsplit(":", 1)[1], f"{name}: advertised port"
        assert cert_hosts.get(node_id) == name, f"node {node_id}'s certificate must name {name}: {cert_hosts}"
        assert env["MAILRAFT_TLS__CERT"] == f"{certs_dir}/node-{node_id}.pem", (name, env["MAILRAFT_TLS__CERT"])
        assert env["MAILRAFT_TLS__KEY"] == f"{certs_dir}/node-{node_id}-key.pem", (name, env["MAILRAFT_TLS__KEY"])
        assert env[NODE_ENV + "ADMIN_ADVERTISE_ADDR"] == f"https://{name}:{env[NODE_ENV + 'ADMIN_ADDR'].rsplit(':', 1)[1]}"
        mounts = dict(v.split(":", 1) for v in s["volumes"])
        data_parent = str(Path(env[NODE_ENV + "DATA_DIR"]).parent)
        assert mounts.get(name) == data_parent, f"{name}: its own volume on {data_parent}, not {mounts}"
        assert mounts.get("certs") == f"{certs_dir}:ro", f"{name}: certificates read-only"
        volumes.add(name)
        peer_urls[node_id] = url
        metrics[name] = env["MAILRAFT_TELEMETRY__METRICS_ADDR"]
        assert s.get("restart") == "unless-stopped", name
        assert s["depends_on"]["certs"]["condition"] == "service_completed_successfully", name
    assert len(set(peer_urls)) == 3 and len(volumes) == 3

    # The bootstrap step adds every other node at the URL it advertises, through node 1's admin listener.
    boot = services["bootstrap"]["environment"]
    joins = dict(e.split("=", 1) for e in boot["MAILRAFT_JOIN"].split())
    assert joins == {i: u for i, u in peer_urls.items() if i != "1"}, f"MAILRAFT_JOIN {joins} vs nodes {peer_urls}"
    assert boot["MAILRAFT_ADMIN_ENDPOINT"] == storage["storage-1"]["environment"][NODE_ENV + "ADMIN_ADVERTISE_ADDR"]
    assert boot["MAILRAFT_DEMO_LOGIN"] == "demo@example.test"

    # Front-ends: every storage endpoint, their own certificates, after the demo account exists.
    for name, s in frontends.items():
        env = s["environment"]
        assert set(env["MAILRAFT_STORAGE__ENDPOINTS"].split(",")) == set(peer_urls.values()), name
        cert = Path(env["MAILRAFT_TLS__CERT"]).name
        assert cert.removeprefix("frontend-").removesuffix(".pem") in frontend_certs, f"{name}: no cert {cert}"
        assert env["MAILRAFT_TLS__KEY"] == env["MAILRAFT_TLS__CERT"].replace(".pem", "-key.pem"), name
        assert s["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully", name
        metrics[name] = env["MAILRAFT_TELEMETRY__METRICS_ADDR"]
    imap_ports = sorted(published(frontends["frontend-1"]) + published(frontends["frontend-2"]))
    assert imap_ports == [("127.0.0.1", 2143, 1143), ("127.0.0.1", 3143, 1143)], imap_ports
    assert published(services["prometheus"]) == [("127.0.0.1", 9090, 9090)], services["prometheus"]["ports"]

    # Every host port follows its environment variable.
    over = load(root, {"MAILRAFT_IMAP1_PORT": "12143", "MAILRAFT_IMAP2_PORT": "13143",
                       "MAILRAFT_PROMETHEUS_PORT": "19090", "MAILRAFT_TAG": "t1"})["services"]
    assert published(over["frontend-1"])[0][1] == 12143 and published(over["frontend-2"])[0][1] == 13143
    assert published(over["prometheus"])[0][1] == 19090
    assert {s["image"].split(":")[1] for s in over.values()} == {"t1"}, "every image follows MAILRAFT_TAG"

    # Prometheus scrapes every Mailraft process at its metrics port, with the alerts' label contract.
    prom = yaml.safe_load((root / "deploy" / "prometheus" / "compose.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "mailraft")
    scraped = {t: sc["labels"]["mailraft_component"] for sc in job["static_configs"] for t in sc["targets"]}
    want = {f"{n}:{a.rsplit(':', 1)[1]}": ("storage" if n in storage else "frontend") for n, a in metrics.items()}
    assert scraped == want, f"scraped {scraped}, processes {want}"
    assert all(a.startswith("0.0.0.0:") for a in metrics.values()), f"metrics must listen beyond loopback: {metrics}"
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    if shutil.which("promtool"):
        with tempfile.TemporaryDirectory() as d:
            prom["rule_files"] = [str(root / "deploy" / "prometheus" / "alerts.yml")]
            cfg = Path(d) / "prometheus.yml"
            cfg.write_text(yaml.safe_dump(prom))
            subprocess.run(["promtool", "check", "config", str(cfg)], check=True, capture_output=True)

    # The scripts parse, and docker-compose (when installed) accepts the file as it resolves it.
    subprocess.run(["sh", "-n", str(root / "deploy" / "compose" / "init.sh")], check=True)
    subprocess.run(["bash", "-n", str(root / "deploy" / "build-image.sh")], check=True)
    if shutil.which("docker-compose"):
        proc = subprocess.run(["docker-compose", "-f", str(root / "deploy" / "compose.yaml"), "config", "-q"],
                              capture_output=True, text=True, env=dict(os.environ, COMPOSE_PROJECT_NAME="check"))
        assert proc.returncode == 0, f"docker-compose config: {proc.stderr}"
