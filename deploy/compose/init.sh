#!/bin/sh
# One-shot set-up steps of the compose cluster (deploy/compose.yaml), run by the `mailraft-toolbox`
# image: the Mailraft image plus this script, dash and sleep (the Mailraft image itself has no
# shell). Every step is idempotent, so `docker-compose up` can run it again on an existing cluster.
#
#   init.sh certs       the cluster CA and the node, front-end and operator certificates (mTLS)
#   init.sh bootstrap   waits for node 1 (which founded the cluster with --bootstrap), adds the other
#                       nodes with `mailraft admin add-node`, creates the demo tenant and user
#
# Environment (set by compose.yaml):
#   MAILRAFT_CERTS_DIR        where the certificates live (a volume every service mounts)
#   MAILRAFT_CERT_NODES       "ID=HOST ..." storage nodes: certificate of node ID names HOST
#   MAILRAFT_CERT_FRONTENDS   "NAME ..." front-end certificates
#   MAILRAFT_ADMIN_ENDPOINT   node 1's admin URL (admin calls follow the leader from there)
#   MAILRAFT_JOIN             "ID=URL ..." nodes to add, with their peer URLs
#   MAILRAFT_DEMO_LOGIN, MAILRAFT_DEMO_PASSWORD   the demo account (`mailraft dev`'s by default)
#   MAILRAFT_INIT_DEADLINE_SECS   how long a step may wait for the cluster (default 180)
set -eu

mailraft=/usr/local/bin/mailraft
certs_dir=${MAILRAFT_CERTS_DIR:-/etc/mailraft/certs}
deadline_secs=${MAILRAFT_INIT_DEADLINE_SECS:-180}

# Seconds since boot: dash has no $SECONDS, and a deadline must not depend on how long each
# attempt took.
now() {
    read -r up _ </proc/uptime
    echo "${up%.*}"
}

# try WHAT CMD...: runs CMD until it succeeds or reports that its work is already done, polling
# once a second until the deadline. A membership change or a write right after start-up fails
# while node 1 elects itself or a new node is still starting, hence the retries.
try() {
    what=$1
    shift
    end=$(($(now) + deadline_secs))
    while :; do
        if out=$("$@" 2>&1); then
            printf '%s: %s\n' "$what" "$out"
            return 0
        fi
        case "$out" in
        *ALREADYEXISTS* | *"already a voter"*)
            printf '%s: already done\n' "$what"
            return 0
            ;;
        esac
        if [ "$(now)" -ge "$end" ]; then
            printf '%s: gave up after %ss: %s\n' "$what" "$deadline_secs" "$out" >&2
            return 1
        fi
        sleep 1
    done
}

# The password goes through stdin: `mailraft admin` never takes it as an argument.
create_user() {
    printf '%s\n' "${MAILRAFT_DEMO_PASSWORD:-demo}" | "$mailraft" admin create-user "$1"
}

# An add-node that was interrupted after the node joined as a learner is finished by promoting it.
join_node() {
    if out=$("$mailraft" admin add-node "$1" "$2" 2>&1); then
        printf '%s\n' "$out"
        return 0
    fi
    case "$out" in
    *"already a learner"*) "$mailraft" admin promote "$1" ;;
    *)
        printf '%s\n' "$out" >&2
        return 1
        ;;
    esac
}

certs() {
    for entry in ${MAILRAFT_CERT_NODES:?}; do
        "$mailraft" certs --dir "$certs_dir" node "${entry%%=*}" --san "${entry#*=}"
    done
    for name in ${MAILRAFT_CERT_FRONTENDS:?}; do
        "$mailraft" certs --dir "$certs_dir" frontend "$name"
    done
    "$mailraft" certs --dir "$certs_dir" operator admin
}

bootstrap() {
    export MAILRAFT_ADMIN_TLS_DIR="$certs_dir"
    : "${MAILRAFT_ADMIN_ENDPOINT:?}"
    try "node 1" "$mailraft" admin cluster-info
    for entry in ${MAILRAFT_JOIN:-}; do
        try "add node ${entry%%=*}" join_node "${entry%%=*}" "${entry#*=}"
    done
    login=${MAILRAFT_DEMO_LOGIN:-demo@example.test}
    try "tenant ${login#*@}" "$mailraft" admin create-tenant "${login#*@}"
    try "user $login" create_user "$login"
    "$mailraft" admin cluster-info
}

case "${1:-}" in
certs) certs ;;
bootstrap) bootstrap ;;
*)
    echo "usage: init.sh certs|bootstrap" >&2
    exit 2
    ;;
esac
