#!/usr/bin/env python3
"""Writes deploy/grafana/mailraft.json, the Grafana dashboard of a Mailraft cluster.

Generated so that every query carries the same namespace filter and every panel the same shape; edit this file
and run it (`python3 deploy/grafana/generate.py`), not the JSON. tests/deploy/check_deploy.py checks that the JSON
is this script's output and that every query names only metrics the Rust code exports.

Panels the issue asks for that have no metric yet (docs/OPERATIONS.md, "Reading the dashboard"): LMTP
deliveries (no LMTP listener), RocksDB compaction, the Raft commit index (only last_log/applied/snapshot/purged
are exported), per-tenant top users (labels never carry tenants, by design) and free disk space.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "mailraft.json"
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"


def sel(metric, labels=""):
    """`metric{namespace=~"$namespace",labels}`."""
    return f"{metric}{{{NS}{',' + labels if labels else ''}}}"


def rate(metric, labels="", by=""):
    inner = f"rate({sel(metric, labels)}[{RATE}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q, metric, labels="", by=""):
    group = ", ".join(["le"] + ([by] if by else []))
    return f"histogram_quantile({q}, sum by ({group}) (rate({sel(metric + '_bucket', labels)}[{RATE}])))"


class Dashboard:
    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.y = 0
        self.x = 0

    def row(self, title):
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, title, targets, unit="short", kind="timeseries", description="", width=8, stack=False):
        if self.x + width > 24:
            self.y += 8
            self.x = 0
        panel = {
            "type": kind,
            "title": title,
            "id": self._id(),
            "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": width, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [
                {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                 "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        if kind == "timeseries" and stack:
            panel["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}, "fillOpacity": 20}
        if kind == "stat":
            panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                "colorMode": "value", "graphMode": "none"}
        self.panels.append(panel)
        self.x += width

    def _id(self):
        self.next_id += 1
        return self.next_id - 1


def build():
    d = Dashboard()

    d.row("Cluster")
    d.panel("Raft leader (node id)", [(f"max({sel('mailraft_raft_leader_id')})", "leader")], kind="stat", width=4,
            description="The node id every storage node reports as leader; 0 means none is known.")
    d.panel("Storage nodes answering", [(f"count({sel('mailraft_raft_term')})", "nodes")], kind="stat", width=4)
    d.panel("Voters / learners", [(f"max by (role) ({sel('mailraft_raft_members')})", "{{role}}")],
            kind="stat", width=4)
    d.panel("Open IMAP connections", [(f"sum({sel('mailraft_imap_connections')})", "connections")],
            kind="stat", width=4)
    d.panel("Versions running", [(f"count by (version) ({sel('mailraft_build_info')})", "{{version}}")],
            kind="stat", width=8, description="More than one version: a rolling upgrade is under way (or stuck).")

    d.row("IMAP front-ends")
    d.panel("Connections per front-end", [
        (sel("mailraft_imap_connections"), "{{instance}} open"),
        (sel("mailraft_imap_preauth_connections"), "{{instance}} not logged in"),
    ])
    d.panel("Connections accepted / refused", [
        (rate("mailraft_imap_connections_total"), "accepted"),
        (rate("mailraft_imap_connections_refused_total", by="reason"), "refused: {{reason}}"),
    ], unit="cps")
    d.panel("Commands by result", [(rate("mailraft_imap_commands_total", by="result"), "{{result}}")],
            unit="reqps", stack=True)
    d.panel("Commands by name (top 10)", [
        (f"topk(10, {rate('mailraft_imap_commands_total', by='command')})", "{{command}}"),
    ], unit="reqps")
    d.panel("Command latency (IDLE, APPEND excluded)", [
        (quantile(q, "mailraft_imap_command_seconds", 'command!~"IDLE|APPEND"'), f"p{int(q * 100)}")
        for q in (0.5, 0.9, 0.99)
    ], unit="s")
    d.panel("p99 latency by command", [
        (quantile(0.99, "mailraft_imap_command_seconds", 'command!="IDLE"', by="command"), "{{command}}"),
    ], unit="s")
    d.panel("Storage call retries and errors", [
        (rate("mailraft_imap_storage_retries_total", by="kind"), "retry: {{kind}}"),
        (rate("mailraft_imap_storage_errors_total", by="kind"), "error: {{kind}}"),
    ], unit="ops", description="Retries are normal around a leader change; errors reached the client.")
    d.panel("Leader re-routing", [(rate("mailraft_imap_storage_reroutes_total", by="reason"), "{{reason}}")],
            unit="ops")
    d.panel("Watch reconnects", [
        (f"sum by (instance) (increase({sel('mailraft_imap_watch_reconnects_total')}[{RATE}]))", "{{instance}}"),
        (f"sum(increase({sel('mailraft_imap_watch_heartbeat_timeouts_total')}[{RATE}]))", "heartbeat timeouts"),
    ])
    d.panel("Session token renewals", [(rate("mailraft_imap_token_refreshes_total", by="result"), "{{result}}")],
            unit="ops")
    d.panel("Slow or abusive clients", [
        (rate("mailraft_imap_write_timeouts_total"), "write timeouts"),
        (rate("mailraft_imap_literals_refused_total", by="stage, form"), "literal refused: {{stage}} {{form}}"),
    ], unit="ops")

    d.row("Raft")
    d.panel("Term per node", [(sel("mailraft_raft_term"), "{{instance}}")])
    d.panel("Leader per node", [(sel("mailraft_raft_is_leader"), "{{instance}}")],
            description="1 on the leader. Two nodes at 1 at once is a leader change in progress.")
    d.panel("Elections and leader changes", [
        (f"sum by (instance) (increase({sel('mailraft_raft_elections_total')}[{RATE}]))", "{{instance}} elections"),
        (f"max(increase({sel('mailraft_raft_leader_changes_total')}[{RATE}]))", "leader changes"),
    ])
    d.panel("Log and applied index", [
        (sel("mailraft_raft_log_index", 'kind="last_log"'), "{{instance}} last log"),
        (sel("mailraft_raft_log_index", 'kind="applied"'), "{{instance}} applied"),
    ])
    last_log = sel("mailraft_raft_log_index", 'kind="last_log"')
    applied = sel("mailraft_raft_log_index", 'kind="applied"')
    d.panel("Apply lag per node (entries)", [
        (f"max by (instance) ({last_log}) - max by (instance) ({applied})", "{{instance}}"),
    ])
    d.panel("Replication lag per follower (leader's view)", [
        (f"max by (follower) ({sel('mailraft_raft_follower_lag_entries')})", "node {{follower}}"),
    ])
    d.panel("Entries appended / applied", [
        (rate("mailraft_raft_log_append_entries_total", by="instance"), "{{instance}} appended"),
        (rate("mailraft_raft_apply_entries_total", by="instance"), "{{instance}} applied"),
    ], unit="ops")
    d.panel("Log append (fsync) and apply latency p99", [
        (quantile(0.99, "mailraft_raft_log_append_seconds", by="instance"), "{{instance}} append"),
        (quantile(0.99, "mailraft_raft_apply_seconds", by="instance"), "{{instance}} apply"),
    ], unit="s")
    d.panel("Snapshots built / installed", [
        (f"sum by (instance, op) (increase({sel('mailraft_raft_snapshots_total')}[{RATE}]))", "{{instance}} {{op}}"),
    ], description="An install is a snapshot transfer received from the leader (a node far behind).")
    d.panel("Snapshot bytes", [
        (rate("mailraft_raft_snapshot_bytes_total", by="op"), "{{op}} bytes/s"),
    ], unit="Bps")
    d.panel("Snapshot duration p99", [(quantile(0.99, "mailraft_raft_snapshot_seconds", by="op"), "{{op}}")],
            unit="s")
    d.panel("Large entries staged / batches split", [
        (rate("mailraft_raft_staged_bytes_total"), "staged bytes/s"),
        (rate("mailraft_raft_staged_entries_total"), "staged entries/s"),
        (rate("mailraft_raft_batches_split_total"), "batches split/s"),
    ])
    d.panel("Raft messages refused", [(rate("mailraft_raft_peer_refused_total", by="reason"), "{{reason}}")],
            unit="ops", description="cluster_mismatch: a node of another cluster; not_a_voter: a removed node.")

    d.row("Storage nodes")
    d.panel("RocksDB size per node", [
        (f"sum by (instance) ({sel('mailraft_rocksdb_size_bytes')})", "{{instance}}"),
    ], unit="bytes")
    d.panel("RocksDB size by column family", [
        (f"max by (cf) ({sel('mailraft_rocksdb_size_bytes')})", "{{cf}}"),
    ], unit="bytes", stack=True)
    d.panel("gRPC calls by code", [(rate("mailraft_grpc_requests_total", by="code"), "{{code}}")],
            unit="reqps", stack=True)
    d.panel("gRPC p99 latency by method", [
        (quantile(0.99, "mailraft_grpc_request_seconds", by="method"), "{{method}}"),
    ], unit="s")
    d.panel("Work pools: queued / running", [
        (f"sum by (pool) ({sel('mailraft_pool_queued')})", "{{pool}} queued"),
        (f"sum by (pool) ({sel('mailraft_pool_active')})", "{{pool}} running"),
    ])
    d.panel("Work pools: wait p99 and refusals", [
        (quantile(0.99, "mailraft_pool_wait_seconds", by="pool"), "{{pool}} wait p99"),
        (rate("mailraft_pool_busy_total", by="pool"), "{{pool}} busy/s"),
    ])
    d.panel("Read streams", [
        (f"sum by (instance) ({sel('mailraft_read_streams_active')})", "{{instance}} open"),
        (rate("mailraft_read_streams_total", by="end"), "ended: {{end}}/s"),
    ])
    d.panel("Retries deduplicated / read errors", [
        (rate("mailraft_dedup_hits_total"), "dedup hits/s"),
        (rate("mailraft_store_read_errors_total"), "read errors/s"),
    ], unit="ops")

    d.row("Security")
    d.panel("gRPC TLS handshake failures / authz denials", [
        (rate("mailraft_grpc_tls_handshake_failures_total", by="listener, reason"), "tls {{listener}}: {{reason}}"),
        (rate("mailraft_grpc_authz_denied_total", by="service, reason"), "denied {{service}}: {{reason}}"),
    ], unit="ops")
    d.panel("Login budgets", [
        (rate("mailraft_auth_refused_total", by="kind, reason"), "refused {{kind}}: {{reason}}"),
        (f"sum by (kind) (increase({sel('mailraft_auth_blocks_total')}[{RATE}]))", "blocked {{kind}}"),
        (rate("mailraft_auth_untracked_total"), "untracked"),
    ])
    d.panel("Login delay p99", [(quantile(0.99, "mailraft_auth_delay_seconds"), "p99")], unit="s")
    d.panel("Password hashing", [(rate("mailraft_password_hashes_total", by="op"), "{{op}}")], unit="ops")
    d.panel("Session tokens", [
        (rate("mailraft_session_tokens_issued_total", by="kind"), "issued: {{kind}}"),
        (rate("mailraft_session_tokens_refused_total", by="reason"), "refused: {{reason}}"),
    ], unit="ops")

    return {
        "title": "Mailraft",
        "uid": "mailraft",
        "description": "Mailraft cluster: IMAP front-ends, Raft, storage nodes, security. See docs/OPERATIONS.md.",
        "tags": ["mailraft", "imap", "raft"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "utc",
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "namespace", "label": "Namespace", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "definition": "label_values(mailraft_build_info, namespace)",
             "query": {"query": "label_values(mailraft_build_info, namespace)", "refId": "namespace"},
             "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "current": {}, "hide": 0},
        ]},
        "annotations": {"list": []},
        "panels": d.panels,
    }


def render():
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--stdout"]:
        sys.stdout.write(render())
    else:
        OUT.write_text(render())
        print(f"wrote {OUT}")
