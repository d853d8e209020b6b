#!/usr/bin/env bash
# Builds the Mailraft container images from a checkout:
#   mailraft:TAG             the `mailraft` binary FROM scratch (deploy/Dockerfile): every role
#   mailraft-toolbox:TAG     that image plus a shell, for the compose cluster's set-up steps
#   mailraft-prometheus:TAG  Debian's Prometheus FROM scratch with the compose scrape configuration
#
# Usage: deploy/build-image.sh [--profile release|debug] [--binary PATH] [--tag TAG] [--only mailraft]
#   --profile release   (default) `cargo build --release -p mailraft`: the image users run
#   --profile debug     the debug binary of `cargo build --workspace` (what the tests build), so CI
#                       makes an image without a second, 33-minute release compile
#   --binary PATH       use this binary as is (no cargo); it is stripped into the build context
#   --tag TAG           image tag (default latest); tests use their own so they never replace
#                       the images a user built
#   --only mailraft     build only the Mailraft image (no toolbox, no Prometheus)
#
# No base image can be pulled here, so every image is FROM scratch: the script copies the binary,
# exactly the shared libraries `ldd` lists and the loader, /etc/passwd and /etc/group with a
# non-root user, and the CA bundle into a build context, then runs `docker build` on it.
# Needs: docker, binutils (strip), ldd, ca-certificates; for the Prometheus image Debian's
# `prometheus` package (scripts/setup.sh installs it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
profile=release
binary=
tag=latest
only=

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --profile) profile=${2:?}; shift 2 ;;
    --binary) binary=${2:?}; binary_given=$binary; shift 2 ;;
    --tag) tag=${2:?}; shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "build-image.sh: unknown argument $1" >&2; usage ;;
    esac
done
case "$profile" in release | debug) ;; *) echo "--profile must be release or debug" >&2; exit 2 ;; esac
case "$only" in "" | mailraft) ;; *) echo "--only takes: mailraft" >&2; exit 2 ;; esac

# 1. The binary.
if [ -z "$binary" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mailraft-target}"
    cd "$root"
    if [ "$profile" = release ]; then
        nice cargo build --locked --release -p mailraft
        binary="$CARGO_TARGET_DIR/release/mailraft"
    else
        # The whole workspace, as scripts/test.sh builds it: selecting one package can change the
        # unified feature set and make cargo rebuild RocksDB.
        nice cargo build --locked --workspace --bins
        binary="$CARGO_TARGET_DIR/debug/mailraft"
    fi
fi
origin=$profile
[ -z "${binary_given:-}" ] || origin="given binary"
[ -x "$binary" ] || { echo "build-image.sh: no executable at $binary" >&2; exit 1; }

ctx=$(mktemp -d "${TMPDIR:-/tmp}/mailraft-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

# copy_with_libs FILE DEST_ROOT [BASE_ROOT]: FILE's shared libraries (as `ldd` resolves them on this host)
# and its loader, at the same paths under DEST_ROOT, symlinks resolved. Refuses a binary with an
# unresolved library rather than building an image that cannot start.
copy_with_libs() {
    local file=$1 dest=$2 have=${3:-} out lib
    out=$(ldd "$file" 2>&1) || {
        # A static binary needs nothing.
        case "$out" in *"not a dynamic executable"* | *"statically linked"*) return 0 ;; esac
        echo "build-image.sh: ldd $file: $out" >&2
        return 1
    }
    if grep -q "not found" <<<"$out"; then
        echo "build-image.sh: $file has unresolved libraries:" >&2
        grep "not found" <<<"$out" >&2
        return 1
    fi
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the loader's "/lib64/ld-linux-x86-64.so.2 (0x...)".
    for lib in $(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out"); do
        # Already in the base image (the toolbox's libc): a second copy would only add a layer.
        [ -n "$have" ] && [ -e "$have$lib" ] && continue
        mkdir -p "$dest$(dirname "$lib")"
        cp -L "$lib" "$dest$lib"
    done
}

# docker build ARGS...: quiet; the legacy builder's deprecation notice (there is no buildx here) is
# shown only with the output of a build that failed.
docker_build() {
    docker build -q "$@" >"$ctx/build.log" 2>&1 || { cat "$ctx/build.log" >&2; return 1; }
}

# 2. The Mailraft image.
mr="$ctx/mailraft"
mkdir -p "$mr/rootfs/usr/local/bin" "$mr/rootfs/etc/ssl/certs" "$mr/rootfs/tmp" \
    "$mr/owned/var/lib/mailraft" "$mr/owned/etc/mailraft/certs"
# Debug info is most of a debug binary (and a third of a release one): the image ships without it.
strip -o "$mr/rootfs/usr/local/bin/mailraft" "$binary"
copy_with_libs "$mr/rootfs/usr/local/bin/mailraft" "$mr/rootfs"
printf 'root:x:0:0:root:/:/sbin/nologin\nmailraft:x:10001:10001:mailraft:/var/lib/mailraft:/sbin/nologin\n' \
    >"$mr/rootfs/etc/passwd"
printf 'root:x:0:\nmailraft:x:10001:\n' >"$mr/rootfs/etc/group"
cp -L /etc/ssl/certs/ca-certificates.crt "$mr/rootfs/etc/ssl/certs/"
chmod 1777 "$mr/rootfs/tmp"
# A data directory is created 0700 by the node anyway; the volume root matches.
chmod 0700 "$mr/owned/var/lib/mailraft" "$mr/owned/etc/mailraft/certs"
version=$("$mr/rootfs/usr/local/bin/mailraft" --version | awk '{print $2}')
revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
docker_build -f "$here/Dockerfile" -t "mailraft:$tag" \
    --label "org.opencontainers.image.title=mailraft" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "io.mailraft.build=$origin" \
    "$mr"
docker run --rm "mailraft:$tag" --version >/dev/null
echo "mailraft:$tag  $(docker image inspect -f '{{.Size}}' "mailraft:$tag" | awk '{printf "%.1f MB", $1/1e6}')  ($origin, $version)"
[ -z "$only" ] || exit 0

# 3. The toolbox: the same image plus dash, sleep and the compose set-up script.
tb="$ctx/toolbox"
mkdir -p "$tb/rootfs/bin" "$tb/rootfs/usr/local/lib/mailraft"
cp -L "$(command -v dash)" "$tb/rootfs/bin/sh"
cp -L "$(command -v sleep)" "$tb/rootfs/bin/sleep"
copy_with_libs "$tb/rootfs/bin/sh" "$tb/rootfs" "$mr/rootfs"
copy_with_libs "$tb/rootfs/bin/sleep" "$tb/rootfs" "$mr/rootfs"
install -m 0755 "$here/compose/init.sh" "$tb/rootfs/usr/local/lib/mailraft/init.sh"
docker_build -f "$here/Dockerfile.toolbox" --build-arg "BASE=mailraft:$tag" -t "mailraft-toolbox:$tag" "$tb"
echo "mailraft-toolbox:$tag  $(docker image inspect -f '{{.Size}}' "mailraft-toolbox:$tag" | awk '{printf "%.1f MB", $1/1e6}')"

# 4. Prometheus.
prom_bin=$(command -v prometheus || true)
[ -n "$prom_bin" ] || { echo "build-image.sh: no prometheus binary (apt-get install prometheus)" >&2; exit 1; }
pr="$ctx/prometheus"
mkdir -p "$pr/rootfs/usr/bin" "$pr/rootfs/etc/prometheus" "$pr/rootfs/usr/share/prometheus" "$pr/owned/prometheus"
cp -L "$prom_bin" "$pr/rootfs/usr/bin/prometheus"
copy_with_libs "$pr/rootfs/usr/bin/prometheus" "$pr/rootfs"
# The classic web UI (Debian's path). Its JavaScript libraries are symlinks into
# /usr/share/javascript; moment-timezone's raw data there is 214 MB the UI never loads.
if [ -d /usr/share/prometheus/web ]; then
    tar -C /usr/share/prometheus -chf - --exclude='*/moment-timezone/data' web | tar -C "$pr/rootfs/usr/share/prometheus" -xf -
fi
cp "$here/prometheus/compose.yml" "$pr/rootfs/etc/prometheus/prometheus.yml"
cp "$here/prometheus/alerts.yml" "$pr/rootfs/etc/prometheus/alerts.yml"
chmod 0644 "$pr/rootfs/etc/prometheus/"*.yml
printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/prometheus:/sbin/nologin\n' >"$pr/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$pr/rootfs/etc/group"
docker_build -f "$here/Dockerfile.prometheus" -t "mailraft-prometheus:$tag" "$pr"
echo "mailraft-prometheus:$tag  $(docker image inspect -f '{{.Size}}' "mailraft-prometheus:$tag" | awk '{printf "%.1f MB", $1/1e6}')"
