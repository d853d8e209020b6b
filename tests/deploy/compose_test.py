#!/usr/bin/env python3
"""The compose cluster end to end: image, start-up, IMAP through both front-ends, a storage node down, Prometheus.

Builds the images from the debug binary (deploy/build-image.sh --profile debug, or --binary $MAILRAFT_BIN), starts
deploy/compose.yaml under a project name and image tag of its own, on free host ports, and then:
  1. logs in as demo@example.test through both front-ends (polling until a deadline: start-up takes a while);
  2. APPENDs through front-end 1 and reads the same bytes back through front-end 2 (by the APPENDUID UID);
  3. stops the Raft leader's container, APPENDs through both front-ends (on sessions opened before the stop and on
     new ones): every APPEND must be acknowledged; reads every message back through the other front-end;
  4. starts the container again and waits until Prometheus's HTTP API reports up == 1 for every target
     (3 storage nodes, 2 front-ends, itself) and exactly one Raft leader, and until the node is a voter again;
  5. restarts front-end 2 and reads every acknowledged message through it;
  6. runs `mailraft-bench append` through both front-ends while a follower is stopped, the leader is paused and a
     front-end is restarted, and checks that no acknowledged APPEND is missing (tests/deploy/compose_chaos.py);
  7. upgrades the storage containers one by one to a newer image under that load: no client error, none missing;
  8. queries every panel of the Grafana dashboard against the cluster's Prometheus: none is empty;
and always tears the cluster, its volumes and its images down, also on failure, Ctrl-C or the hard time cap.

Without a Docker engine it prints a loud SKIP and exits 0, unless MAILRAFT_REQUIRE_DOCKER=1 (then it fails).
Environment: MAILRAFT_BIN (a built `mailraft` binary to use as is), MAILRAFT_BENCH_BIN (the `mailraft-bench` binary;
default: beside MAILRAFT_BIN, else in the cargo target dir), MAILRAFT_COMPOSE_TEST_CAP_SECS (hard cap, default 1200), MAILRAFT_KEEP_CLUSTER=1 (leave the cluster running for inspection; prints how to remove it).
Ends with one summary line; exits non-zero on failure after printing the containers' last log lines.
"""

import imaplib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import tempfile
import urllib.request
from pathlib import Path

import compose_chaos

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
BUILD = ROOT / "deploy" / "build-image.sh"
HARD_CAP_SECS = int(os.environ.get("MAILRAFT_COMPOSE_TEST_CAP_SECS", "1200"))
# Deadlines of the steps that wait for the cluster (bounded by the hard cap as well).
START_DEADLINE_SECS = 240
FAILOVER_DEADLINE_SECS = 60
LOGIN = ("demo@example.test", "demo")
STORAGE = ["storage-1", "storage-2", "storage-3"]
# Scrape targets: 5 Mailraft processes and Prometheus itself.
EXPECTED_TARGETS = 6


class HardCap(Exception):
    """The whole test ran longer than its cap (or was interrupted)."""


def log(msg):
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def skip(reason):
    bar = "!" * 78
    print(f"{bar}\n!!! SKIP tests/deploy/compose_test.py: {reason}\n!!! The compose cluster was NOT tested.\n{bar}",
          flush=True)
    return 1 if os.environ.get("MAILRAFT_REQUIRE_DOCKER") == "1" else 0


def free_port():
    """A port the kernel reports free on loopback (never a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_cmd():
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def poll(what, deadline_secs, attempt, interval=1.0):
    """Calls attempt() until it returns a true value or raises no more; the last error explains a timeout."""
    end = time.monotonic() + deadline_secs
    last = None
    while True:
        try:
            result = attempt()
            if result:
                return result
            last = f"not yet: {result!r}"
        except Exception as e:  # the condition is not met yet; keep the reason for the timeout message
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= end:
            raise AssertionError(f"{what}: not true within {deadline_secs}s ({last})")
        time.sleep(interval)


class Cluster:
    def __init__(self, compose, project, env):
        self.compose = compose
        self.project = project
        self.env = env

    def run(self, *args, timeout=300, check=True, capture=True, input_text=None, tag=None):
        """A compose command on this project; `tag` runs it with another MAILRAFT_TAG (a newer image)."""
        cmd = self.compose + ["-p", self.project, "-f", str(COMPOSE_FILE), *args]
        env = self.env if tag is None else dict(self.env, MAILRAFT_TAG=tag)
        proc = subprocess.run(cmd, env=env, cwd=ROOT, timeout=timeout, text=True, capture_output=capture,
                              input=input_text)
        if check and proc.returncode != 0:
            out = (proc.stdout or "") + (proc.stderr or "")
            raise AssertionError(f"{' '.join(cmd[len(self.compose):])} failed ({proc.returncode}):\n{out[-3000:]}")
        return proc

    def admin(self, node, *args):
        """`mailraft admin` inside a running storage container, against that node's admin listener."""
        proc = self.run("exec", "-T", node, "/usr/local/bin/mailraft", "admin",
                        f"--endpoint=https://{node}:50061", "--tls-dir=/etc/mailraft/certs", *args, timeout=60)
        return proc.stdout


def imap_connect(port):
    conn = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    typ, _ = conn.login(*LOGIN)
    assert typ == "OK", typ
    return conn


def message(tag):
    msg_id = f"<{tag}.{secrets.token_hex(6)}@compose-test.example.test>"
    body = (f"From: compose-test@example.test\r\nTo: {LOGIN[0]}\r\nSubject: {tag}\r\n"
            f"Message-ID: {msg_id}\r\n\r\nsent by tests/deploy/compose_test.py ({tag})\r\n")
    return body.encode()


def append(conn, data):
    """APPENDs data to INBOX; returns its UID from the APPENDUID response code (RFC 4315 §3)."""
    typ, resp = conn.append("INBOX", None, None, data)
    assert typ == "OK", (typ, resp)
    text = resp[0].decode()
    assert "APPENDUID" in text, text
    return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]"))


def fetch(conn, uid):
    typ, _ = conn.select("INBOX")
    assert typ == "OK", typ
    typ, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    parts = [d for d in data if isinstance(d, tuple)]
    return parts[0][1] if parts else None


def prometheus_query(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def leader_of(cluster, nodes):
    """The Raft leader as seen by the first answering node (node ids are the container suffixes)."""
    for node in nodes:
        try:
            info = json.loads(cluster.admin(node, "cluster-info", "--json"))
        except Exception:
            continue
        if info.get("leader_id"):
            return f"storage-{info['leader_id']}", info
    return None


def scenario(cluster, ports):
    imap1, imap2, prom = ports["MAILRAFT_IMAP1_PORT"], ports["MAILRAFT_IMAP2_PORT"], ports["MAILRAFT_PROMETHEUS_PORT"]
    log(f"waiting for IMAP login on 127.0.0.1:{imap1} and :{imap2}")
    fe1 = poll("login through front-end 1", START_DEADLINE_SECS, lambda: imap_connect(imap1))
    fe2 = poll("login through front-end 2", START_DEADLINE_SECS, lambda: imap_connect(imap2))
    log("both front-ends accept demo@example.test")

    sent = {}
    data = message("before-failover")
    uid = append(fe1, data)
    sent[uid] = data
    got = poll("APPEND through front-end 1 visible through front-end 2", 30, lambda: fetch(fe2, uid))
    assert got == data, (got, data)
    log(f"APPEND through front-end 1 (UID {uid}) read back through front-end 2")

    leader, info = poll("a leader", 60, lambda: leader_of(cluster, STORAGE))
    voters = [m for m in info.get("members", []) if m.get("role") == "voter"]
    assert len(voters) == 3, f"expected 3 voters, cluster-info says {info}"
    log(f"stopping the leader's container {leader} (members: {len(voters)} voters)")
    cluster.run("stop", "-t", "10", leader, timeout=60)

    # Sessions opened before the stop keep working, and new logins too: every APPEND must be acknowledged
    # (the front-ends retry through the election with idempotent writes).
    fe1_new = poll("login through front-end 1 with the leader down", FAILOVER_DEADLINE_SECS,
                   lambda: imap_connect(imap1))
    for i, conn in enumerate([fe1, fe2, fe1_new, fe2, fe1]):
        data = message(f"during-failover-{i}")
        sent[append(conn, data)] = data
    log(f"5 APPENDs acknowledged with {leader} stopped")
    for uid, data in sent.items():
        got = poll(f"UID {uid} through front-end 2", 30, lambda: fetch(fe2, uid))
        assert got == data, (uid, got, data)
    typ, count = fe1.select("INBOX")
    assert typ == "OK" and int(count[0]) == len(sent), (typ, count, len(sent))
    log(f"all {len(sent)} messages read back through front-end 2; INBOX holds {int(count[0])}")

    log(f"starting {leader} again")
    cluster.run("start", leader, timeout=60)

    def all_up():
        up = prometheus_query(prom, "up")
        down = [r["metric"].get("instance") for r in up if r["value"][1] != "1"]
        assert len(up) == EXPECTED_TARGETS and not down, f"{len(up)} targets, down: {down}"
        leaders = prometheus_query(prom, "sum(mailraft_raft_is_leader)")
        assert leaders and leaders[0]["value"][1] == "1", f"leaders: {leaders}"
        return up

    up = poll("Prometheus: up == 1 for every target and one leader", 90, all_up, interval=2)
    log("Prometheus: up == 1 for " + ", ".join(sorted(r["metric"]["instance"] for r in up)))

    # The restarted node is a member again and caught up: its state machine applied what the others did.
    def rejoined():
        _, info = leader_of(cluster, [leader])
        return info if all(m.get("role") == "voter" for m in info.get("members", [])) else None

    poll(f"{leader} back as a voter", 60, rejoined)
    data = message("after-restart")
    uid = append(fe2, data)
    assert poll("APPEND after the restart through front-end 1", 30, lambda: fetch(fe1, uid)) == data
    sent[uid] = data
    for conn in (fe1, fe2, fe1_new):
        conn.logout()

    # A restarted front-end holds no state: it serves every acknowledged message again.
    log("restarting frontend-2")
    cluster.run("restart", "-t", "10", "frontend-2", timeout=60)
    fe2 = poll("login through the restarted front-end 2", 60, lambda: imap_connect(imap2))
    for uid, data in sent.items():
        assert fetch(fe2, uid) == data, f"UID {uid} differs through the restarted front-end 2"
    fe2.logout()
    log(f"all {len(sent)} messages read back through the restarted front-end 2")
    return len(sent), leader


def bench_binary():
    """The `mailraft-bench` binary the load steps run (built with the workspace, like `mailraft`)."""
    if os.environ.get("MAILRAFT_BENCH_BIN"):
        return os.environ["MAILRAFT_BENCH_BIN"]
    candidates = []
    if os.environ.get("MAILRAFT_BIN"):
        candidates.append(Path(os.environ["MAILRAFT_BIN"]).with_name("mailraft-bench"))
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "mailraft-target"))
    candidates.append(Path(target) / "debug" / "mailraft-bench")
    found = next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    assert found, f"no mailraft-bench binary (looked at {[str(c) for c in candidates]}); set MAILRAFT_BENCH_BIN"
    return str(found)


def newer_image(tag, new_tag):
    """mailraft:new_tag, a distinct image of the same binary: what a rolling upgrade replaces the containers with."""
    dockerfile = f"FROM mailraft:{tag}\nLABEL io.mailraft.upgrade-test={new_tag}\n"
    out = subprocess.run(["docker", "build", "-q", "-t", f"mailraft:{new_tag}", "-"], input=dockerfile, text=True,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, f"docker build of mailraft:{new_tag} failed: {out.stderr[-2000:]}"
    ids = {t: subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", f"mailraft:{t}"], capture_output=True,
                             text=True, timeout=30).stdout.strip() for t in (tag, new_tag)}
    assert ids[tag] != ids[new_tag], f"the newer image is the same image: {ids}"


def main():
    started = time.monotonic()
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return skip("`docker info` fails: no Docker engine here")
    compose = compose_cmd()
    if compose is None:
        return skip("neither docker-compose nor `docker compose` is installed")

    def on_signal(signum, _frame):
        raise HardCap(f"signal {signum}" if signum != signal.SIGALRM else f"hard cap of {HARD_CAP_SECS}s reached")

    for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.alarm(HARD_CAP_SECS)

    suffix = f"{os.getpid()}{secrets.token_hex(2)}"
    tag = f"test-{suffix}"
    new_tag = f"{tag}-next"
    ports = {k: free_port() for k in ("MAILRAFT_IMAP1_PORT", "MAILRAFT_IMAP2_PORT", "MAILRAFT_PROMETHEUS_PORT")}
    env = dict(os.environ, MAILRAFT_TAG=tag, **{k: str(v) for k, v in ports.items()})
    env.pop("MAILRAFT_DEMO_PASSWORD", None)
    cluster = Cluster(compose, f"mailraft-test-{suffix}", env)
    ok = False
    try:
        build = [str(BUILD), "--profile", "debug", "--tag", tag]
        if os.environ.get("MAILRAFT_BIN"):
            build += ["--binary", os.environ["MAILRAFT_BIN"]]
        log(f"building the images ({' '.join(build[1:])})")
        out = subprocess.run(build, cwd=ROOT, env=env, text=True, capture_output=True, timeout=HARD_CAP_SECS)
        assert out.returncode == 0, f"build-image.sh failed:\n{out.stdout}\n{out.stderr[-3000:]}"
        for line in out.stdout.strip().splitlines():
            log(f"image {line}")
        log(f"docker-compose up -d (project {cluster.project}, ports {ports})")
        cluster.run("up", "-d", timeout=START_DEADLINE_SECS + 60)
        messages, stopped = scenario(cluster, ports)
        bench = bench_binary()
        with tempfile.TemporaryDirectory(prefix="mailraft-compose-") as work:
            chaos = compose_chaos.chaos_under_load(cluster, ports, bench, work, leader_of, STORAGE)
            newer_image(tag, new_tag)
            upgraded = compose_chaos.rolling_upgrade(cluster, ports, bench, work, leader_of, STORAGE, new_tag)
        panels = compose_chaos.dashboard_has_data(prometheus_query, ports["MAILRAFT_PROMETHEUS_PORT"])
        ok = True
        print(f"compose test: PASS in {time.monotonic() - started:.0f}s: {messages} messages appended and read back "
              f"across both front-ends, {stopped} stopped and restarted, frontend-2 restarted, 0 lost, all "
              f"{EXPECTED_TARGETS} scrape targets up; under load: {chaos} APPENDs acknowledged through a stopped "
              f"follower, a paused leader and a restarted front-end, {upgraded} through a rolling upgrade of the "
              f"3 storage nodes, 0 lost; all {panels} dashboard panels have data", flush=True)
        return 0
    except (Exception, HardCap) as e:
        print(f"compose test: FAIL after {time.monotonic() - started:.0f}s: {e}", flush=True)
        try:
            logs = cluster.run("logs", "--no-color", "--tail", "40", timeout=60, check=False)
            print(logs.stdout[-20000:], flush=True)
        except Exception as le:
            print(f"(no logs: {le})")
        return 1
    finally:
        signal.alarm(0)
        # A second Ctrl-C must not skip the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.environ.get("MAILRAFT_KEEP_CLUSTER") == "1" and not ok:
            log(f"cluster kept: {' '.join(compose)} -p {cluster.project} -f {COMPOSE_FILE} down -v; "
                f"docker rmi mailraft:{tag} mailraft:{new_tag} mailraft-toolbox:{tag} mailraft-prometheus:{tag}")
        else:
            log("tearing down")
            try:
                cluster.run("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)
            finally:
                subprocess.run(["docker", "rmi", "-f", f"mailraft-prometheus:{tag}", f"mailraft-toolbox:{tag}",
                                f"mailraft:{new_tag}", f"mailraft:{tag}"], capture_output=True, timeout=120)


if __name__ == "__main__":
    sys.exit(main())
