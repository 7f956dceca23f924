#!/usr/bin/env bash
# Build the image and run the compose demo under a real Docker engine, on this machine's
# loopback: a SuperLink and 3 SuperNodes with TLS and node authentication, each mounting only
# its own site directory (the image holds no data), host networking,
# a ROUNDS-round run whose run directory lands in docker/runs on the host. Stops everything
# it started (containers, volume, the wheel server, and dockerd if it started one).
#
#   sudo bash docker/selftest.sh
#
# Needs the project's .venv (scripts/setup.sh), Docker (Debian: docker.io docker-compose)
# and, where no registry serves python:3.11-slim-bookworm, debootstrap. Environment:
#   BASE_IMAGE      a Debian bookworm image with python3 + pip (default: pulled, else a
#                   debootstrap root imported as fedzda-base:bookworm, built once)
#   TORCH           torch packages for the image (default: torch==2.13.0+cpu, the CPU-only path)
#   WHEELS          a directory holding the TORCH wheels, served to the build on 127.0.0.1
#                   (their own dependencies, and the app's, come from PyPI)
#                   (their dependencies come from PyPI)
#                   (default /opt/wheels); empty: PyTorch's CPU index
#   ROUNDS          rounds of the run (2)
#   DEBIAN_MIRROR   for debootstrap (http://deb.debian.org/debian)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
ROUNDS="${ROUNDS:-2}"
TORCH="${TORCH:-torch==2.13.0+cpu}"
WHEELS="${WHEELS-/opt/wheels}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="$(mktemp -d /tmp/fedzda-selftest.XXXXXX)"
PROJECT="fedzda-selftest-$$"
DOCKERD_PID="" WHEEL_PID=""
say() { echo "selftest: $*"; }
t0=$(date +%s)

cleanup() {
  set +e
  if [ -f "$WORK/compose.yml" ]; then
    docker-compose -p "$PROJECT" --project-directory docker -f "$WORK/compose.yml" \
      down -v --remove-orphans >/dev/null 2>&1
  fi
  [ -n "$WHEEL_PID" ] && kill "$WHEEL_PID" 2>/dev/null
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" && wait "$DOCKERD_PID" 2>/dev/null
    say "stopped the dockerd it started"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# 1. an engine: the running one, or one started here (vfs, no iptables, no bridge)
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (vfs storage, no bridge, no iptables)"
  dockerd --storage-driver=vfs --iptables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { cat "$WORK/dockerd.log"; exit 1; }
fi

# 2. a base image
if [ -z "${BASE_IMAGE:-}" ]; then
  if docker image inspect fedzda-base:bookworm >/dev/null 2>&1; then
    BASE_IMAGE=fedzda-base:bookworm
  elif timeout 60 docker pull -q python:3.11-slim-bookworm >/dev/null 2>&1; then
    BASE_IMAGE=python:3.11-slim-bookworm
  else
    say "no registry: building fedzda-base:bookworm with debootstrap from $MIRROR"
    root="$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
      bookworm "$root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
      tail -20 "$WORK/debootstrap.log"
      exit 1
    }
    echo "deb $MIRROR bookworm main" >"$root/etc/apt/sources.list"
    # trust what this host trusts (a TLS-intercepting proxy's CA, where there is one)
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED # a venv-less image, as python:3.11-slim
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import -c 'CMD ["python3"]' \
      -c "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" - fedzda-base:bookworm >/dev/null
    rm -rf "$root"
    BASE_IMAGE=fedzda-base:bookworm
  fi
fi
say "base image $BASE_IMAGE"

# 3. the image (torch wheels from a loopback-only server when WHEELS is set)
PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
if [ -n "$WHEELS" ]; then
  wport=$($PY -c "from scripts.deploy import free_port; print(free_port())")
  $PY -m http.server --bind 127.0.0.1 "$wport" --directory "$WHEELS" >/dev/null 2>&1 &
  WHEEL_PID=$!
  PIP_ARGS="--find-links http://127.0.0.1:$wport/"  # the rest (torch's own deps) from PyPI
  sleep 1
fi
say "building fedzda:0.1.0 ($TORCH)"
docker build --network host -q -f docker/Dockerfile -t fedzda:0.1.0 \
  --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TORCH="$TORCH" \
  --build-arg TORCH_PIP_ARGS="$PIP_ARGS" . >"$WORK/build.log" 2>&1 || {
  tail -30 "$WORK/build.log"
  exit 1
}

# 4. secrets, ports, the demo rewritten for loopback
[ -f docker/secrets/ca.crt ] || bash docker/make-secrets.sh
read -r port p0 p1 p2 < <($PY -c "from scripts.deploy import free_port as f; print(f(), f(), f(), f())")
ROUNDS="$ROUNDS" bash docker/make-sites.sh  # each SuperNode's own site directory
$PY docker/hostnet.py "$WORK" --port "$port" --supernode-ports "$p0,$p1,$p2"
compose() { docker-compose -p "$PROJECT" --project-directory docker -f "$WORK/compose.yml" "$@"; }
mkdir -p docker/runs
touch "$WORK/started"

# 5. SuperLink, registration, SuperNodes; then the run in the foreground
say "SuperLink on 127.0.0.1:$port, SuperNodes on $p0 $p1 $p2"
compose up -d superlink register supernode-0 supernode-1 supernode-2 >"$WORK/up.log" 2>&1 || {
  cat "$WORK/up.log"
  compose logs --no-color | tail -40
  exit 1
}
say "running $ROUNDS rounds"
compose run --rm --no-deps run 2>&1 | tee "$WORK/run.log" | grep -E "round|outputs in|ERROR" || true
final=$(find docker/runs -name model_final.pt -newer "$WORK/started" | head -1)
if [ -z "$final" ]; then
  say "FAILED: no run directory with model_final.pt appeared in docker/runs"
  compose logs --no-color | tail -60
  exit 1
fi
say "run directory $(dirname "$final") ($(ls "$(dirname "$final")" | tr '\n' ' '))"
say "passed in $(($(date +%s) - t0)) s"
