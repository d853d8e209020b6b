"""The compose cluster under load: faults, a rolling upgrade, and the dashboard against the live Prometheus.

Used by tests/deploy/compose_test.py once the cluster is up. Load comes from `mailraft-bench append` (one process per
front-end, each with users of its own), whose end-of-run check is "per user, STATUS MESSAGES at the end is at least
the count at the start plus the APPENDs that were acknowledged": an acknowledged APPEND that got lost is a violation.

  * chaos_under_load: a follower's container stopped and started, the leader's container paused and unpaused (a
    node that neither answers nor closes its connections: the others elect a new leader and the front-ends give up
    on its silent Watch stream), and a front-end restarted, each step waiting until the load made progress again.
  * rolling_upgrade: every storage container recreated one at a time from a newer image (followers first, then the
    leader), each waited on until the leader sees it caught up, under load; the bench must see no error at all,
    because the front-ends retry through the leader change (a front-end restart is the only step allowed to drop
    sessions). Then `set-feature-level` (every member must answer) and equal state digests on all nodes. The newer
    image holds the same binary (there is no older release to start from yet), so this proves the procedure and
    the absence of client errors, not compatibility between two versions.
  * dashboard_has_data: every panel of deploy/grafana/mailraft.json returns data from the cluster's Prometheus.

Between fault steps the test waits for progress (more messages in the load's mailboxes than before), never for a
fixed time; every wait has a deadline.
"""

import imaplib
import json
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "mailraft.json"
LOAD_PASSWORD = "load-test-password"
# Users per bench process and sessions per bench process.
LOAD_USERS = 2
LOAD_CLIENTS = 3
# Messages the load must add after a fault step before the next one starts.
PROGRESS = 10
STEP_DEADLINE_SECS = 90


def log(msg):
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_users(prefix):
    return [f"{prefix}{i}@example.test" for i in range(1, LOAD_USERS + 1)]


def create_load_users(cluster, prefixes):
    """Creates the bench users through the admin API (password on stdin, never as an argument)."""
    for prefix in prefixes:
        for user in load_users(prefix):
            cluster.run("exec", "-T", "storage-1", "/usr/local/bin/mailraft", "admin",
                        "--endpoint=https://storage-1:50061", "--tls-dir=/etc/mailraft/certs",
                        "create-user", "--if-not-exists", user, input_text=LOAD_PASSWORD + "\n", timeout=60)


def inbox_total(port, prefix):
    """Messages in the INBOXes of a bench process's users, through one front-end."""
    total = 0
    for user in load_users(prefix):
        conn = imaplib.IMAP4("127.0.0.1", port, timeout=20)
        try:
            typ, _ = conn.login(user, LOAD_PASSWORD)
            assert typ == "OK", typ
            typ, data = conn.status("INBOX", "(MESSAGES)")
            assert typ == "OK", (typ, data)
            total += int(data[0].decode().rsplit("MESSAGES", 1)[1].strip(" )"))
        finally:
            try:
                conn.logout()
            except Exception:
                pass
    return total


class Load:
    """One `mailraft-bench append` process per front-end, for a fixed time."""

    def __init__(self, bench_bin, ports, secs, workdir, name):
        self.runs = []
        for i, port in enumerate(ports):
            prefix = f"{name}{i}u"
            report = Path(workdir) / f"{name}-{i}.json"
            cmd = [bench_bin, "--host", "127.0.0.1", "--port", str(port), "--user-pattern", f"{prefix}%d@example.test",
                   "--password", LOAD_PASSWORD, "--users", str(LOAD_USERS), "--clients", str(LOAD_CLIENTS),
                   "--secs", str(secs), "--timeout", "20", "--quiet", "--json", str(report), "append"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.runs.append((port, prefix, report, proc))

    @staticmethod
    def prefixes(name, n):
        return [f"{name}{i}u" for i in range(n)]

    def total(self):
        return sum(inbox_total(port, prefix) for port, prefix, _, _ in self.runs)

    def wait_progress(self, what, since):
        """Waits until the load added PROGRESS messages after `since`; returns the new total."""
        end = time.monotonic() + STEP_DEADLINE_SECS
        last = None
        while time.monotonic() < end:
            for _, _, _, proc in self.runs:
                assert proc.poll() is None, f"a bench process ended before the faults were done: {proc.stdout.read()}"
            try:
                now = self.total()
                if now >= since + PROGRESS:
                    log(f"{what}: the load went on ({since} -> {now} messages)")
                    return now
                last = f"{now} messages"
            except Exception as e:  # a front-end restarting: try again until the deadline
                last = f"{type(e).__name__}: {e}"
            time.sleep(1)
        raise AssertionError(f"{what}: the load made no progress within {STEP_DEADLINE_SECS}s ({last})")

    def finish(self, deadline_secs):
        """Waits for every bench process; returns (acknowledged, errors, violations) summed over them."""
        acked = errors = violations = 0
        for port, _, report, proc in self.runs:
            out, _ = proc.communicate(timeout=deadline_secs)
            assert proc.returncode == 0, f"mailraft-bench on :{port} exited {proc.returncode}:\n{out[-3000:]}"
            r = json.loads(report.read_text())
            assert r.get("unsupported") is None, r["unsupported"]
            acked += r["counters"].get("acknowledged deliveries", 0)
            errors += sum(r["errors"].values())
            violations += r["violation_count"]
            for v in r["violations"][:5]:
                log(f"violation on :{port}: {v}")
            if r["errors"]:
                log(f"bench on :{port}: errors {r['errors']}")
        return acked, errors, violations


def chaos_under_load(cluster, ports, bench_bin, workdir, leader_of, storage):
    imap1, imap2 = ports["MAILRAFT_IMAP1_PORT"], ports["MAILRAFT_IMAP2_PORT"]
    create_load_users(cluster, Load.prefixes("chaos", 2))
    # Long enough for the three steps (about 45 s here); a bench that ends before them fails the test.
    load = Load(bench_bin, [imap1, imap2], 100, workdir, "chaos")
    total = load.wait_progress("load started", 0)

    leader, _ = leader_of(cluster, storage)
    follower = next(n for n in storage if n != leader)
    log(f"stopping follower {follower}")
    cluster.run("stop", "-t", "10", follower, timeout=60)
    total = load.wait_progress(f"{follower} stopped", total)
    cluster.run("start", follower, timeout=60)
    wait_voters(cluster, leader_of, storage)

    leader, _ = leader_of(cluster, storage)
    log(f"pausing the leader's container {leader}")
    cluster.run("pause", leader, timeout=60)
    try:
        total = load.wait_progress(f"{leader} paused", total)
    finally:
        cluster.run("unpause", leader, timeout=60)
    wait_voters(cluster, leader_of, storage)

    log("restarting frontend-1")
    cluster.run("restart", "-t", "10", "frontend-1", timeout=60)
    total = load.wait_progress("frontend-1 restarted", total)

    acked, errors, violations = load.finish(200)
    log(f"chaos: {acked} APPENDs acknowledged, {errors} client errors (reconnects), {violations} violations")
    assert acked > 0, "the load acknowledged nothing"
    assert violations == 0, f"{violations} acknowledged APPENDs missing after the faults"
    return acked


# Entries a follower may still be behind the leader and count as caught up (the load keeps writing).
CAUGHT_UP_LAG = 64


def wait_voters(cluster, leader_of, storage):
    """Waits until the leader reports every node as a voter that has caught up with it (replication lag at most
    CAUGHT_UP_LAG entries), and every node answers cluster-info."""
    def ok():
        leader, _ = leader_of(cluster, storage)
        # Replication progress is the leader's view only.
        _, info = leader_of(cluster, [leader])
        members = info.get("members", [])
        voters = [m for m in members if m.get("role") == "voter"]
        behind = [m for m in members if m.get("node_id") != info.get("node_id")
                  and (not m.get("has_matched") or m.get("lag", 0) > CAUGHT_UP_LAG)]
        return (len(voters) == len(storage) and not behind
                and all(leader_of(cluster, [n]) for n in storage))

    end = time.monotonic() + STEP_DEADLINE_SECS
    last = None
    while time.monotonic() < end:
        try:
            if ok():
                return
        except Exception as e:  # no leader yet
            last = f"{type(e).__name__}: {e}"
        time.sleep(1)
    raise AssertionError(f"3 voters and a leader: not within {STEP_DEADLINE_SECS}s ({last})")


def rolling_upgrade(cluster, ports, bench_bin, workdir, leader_of, storage, new_tag):
    """Recreates each storage container from `new_tag`, followers first, under load (docs/OPERATIONS.md)."""
    imap1, imap2 = ports["MAILRAFT_IMAP1_PORT"], ports["MAILRAFT_IMAP2_PORT"]
    create_load_users(cluster, Load.prefixes("upgrade", 2))
    load = Load(bench_bin, [imap1, imap2], 80, workdir, "upgrade")
    total = load.wait_progress("load started", 0)
    leader, _ = leader_of(cluster, storage)
    order = [n for n in storage if n != leader] + [leader]
    for node in order:
        log(f"upgrading {node} to mailraft:{new_tag}")
        cluster.run("up", "-d", "--no-deps", node, timeout=120, tag=new_tag)
        wait_voters(cluster, leader_of, storage)
        image = cluster.run("ps", "-q", node, timeout=30).stdout.strip()
        used = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}", image], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        assert used == f"mailraft:{new_tag}", f"{node} runs {used}"
        total = load.wait_progress(f"{node} upgraded", total)
    acked, errors, violations = load.finish(200)
    log(f"rolling upgrade: {acked} APPENDs acknowledged, {errors} client errors, {violations} violations")
    # The last step of the procedure (docs/OPERATIONS.md): raise the feature level once every node runs the
    # new binary; every member must be asked and answer. Then the replicas must hold identical states.
    level = known_feature_level()
    out = cluster.admin(storage[0], "set-feature-level", str(level))
    log(f"set-feature-level {level}: {out.strip()}")
    digests = same_state(cluster, storage)
    log(f"state digests of all {len(storage)} nodes agree at applied index {digests['applied_index']}")
    assert acked > 0, "the load acknowledged nothing"
    assert violations == 0, f"{violations} acknowledged APPENDs missing after the upgrade"
    assert errors == 0, f"{errors} client-visible errors during the rolling upgrade"
    return acked


def known_feature_level():
    """The newest feature level the binary under test knows (`KNOWN_FEATURE_LEVEL` in its source)."""
    source = (Path(__file__).resolve().parents[2] / "crates/model/src/feature.rs").read_text()
    found = re.search(r"pub const KNOWN_FEATURE_LEVEL: u32 = (\d+);", source)
    assert found, "KNOWN_FEATURE_LEVEL not found in crates/model/src/feature.rs"
    return int(found.group(1))


def same_state(cluster, storage):
    """Waits until every node applied the same index, then checks their state digests are equal."""
    end = time.monotonic() + STEP_DEADLINE_SECS
    last = None
    while time.monotonic() < end:
        digests = {n: json.loads(cluster.admin(n, "state-digest")) for n in storage}
        indexes = {d["applied_index"] for d in digests.values()}
        if len(indexes) == 1:
            shas = {d["sha256"] for d in digests.values()}
            assert len(shas) == 1, f"replicas diverged at the same applied index: {digests}"
            return next(iter(digests.values()))
        last = digests
        time.sleep(1)
    raise AssertionError(f"the nodes did not reach the same applied index within {STEP_DEADLINE_SECS}s: {last}")


def dashboard_queries():
    """(panel title, expr) of every dashboard target, with Grafana's variables filled in."""
    dash = json.loads(DASHBOARD.read_text())
    for p in dash["panels"]:
        for sub in [p] + p.get("panels", []):
            exprs = [t["expr"].replace("$__rate_interval", "2m").replace("$namespace", ".*")
                     for t in sub.get("targets", [])]
            if exprs:
                yield sub["title"], exprs


def dashboard_has_data(prometheus_query, prom_port):
    """Every panel has at least one query that returns a series (a 0 is data; "no data" is not)."""
    empty = []
    panels = 0
    for title, exprs in dashboard_queries():
        panels += 1
        if not any(prometheus_query(prom_port, e) for e in exprs):
            empty.append(f"{title}: {exprs}")
    assert not empty, "dashboard panels without data:\n  " + "\n  ".join(empty)
    log(f"dashboard: all {panels} panels return data from Prometheus")
    return panels
