#!/usr/bin/env bash
# Installs what Mayfly needs on a Debian machine, as root, and makes sure a
# Docker engine answers. Safe to run again: it only does what is missing.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl ca-certificates)
# The oci driver starts task containers with runc itself (docker.io pulls it
# in too, but a host with another engine may lack it).
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need_pkgs+=(runc)
# crun starts containers faster; the driver takes it where it works on the
# host's cgroup set-up (not on a hybrid v1/v2 one), else runc.
command -v crun >/dev/null 2>&1 || need_pkgs+=(crun)
# The busybox stack copies Debian's static busybox into a FROM-scratch image.
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
# The other stacks start from a Debian system that debootstrap installs from
# the host's package mirror; it checks the archive's signatures with the
# keyring.
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_pkgs+=(debootstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need_pkgs+=(debian-archive-keyring)
# The dashboard's browser tests drive Debian's headless Chromium.
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
# The PostgreSQL store's tests start a throw-away server of their own from
# Debian's binaries; no system server is needed.
pg_missing=""
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { need_pkgs+=(postgresql); pg_missing=1; }

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing packages: ${need_pkgs[*]}; run as root or install them yourself"
    exit 1
  fi
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [ -n "$pg_missing" ]; then
    # Install the binaries only: no main cluster, and no service started
    # (policy-rc.d answering 101 forbids it for the time of the install).
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/mayfly.conf
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null 2>&1 || { log "Go 1.26 or newer is required (https://go.dev/dl/)"; exit 1; }

engine_up() { curl -fsS --max-time 5 --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; }

if engine_up; then
  log "Docker engine answers"
  exit 0
fi

started=""
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  log "starting docker with systemctl"
  systemctl start docker && started=systemd || true
fi
if [ -z "$started" ]; then
  # Started by hand: no bridge and no iptables rules, so the engine creates
  # no private-range network; task containers run with networking off.
  # A dockerd that was killed leaves its pid files and maybe its own
  # containerd, which stop a new one from starting.
  if ! pidof dockerd >/dev/null 2>&1; then
    pkill -f 'containerd --config /var/run/docker/containerd/containerd.toml' 2>/dev/null || true
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
  fi
  log "starting dockerd (no bridge, no iptables); its log is /var/log/mayfly-dockerd.log"
  nohup dockerd --bridge=none --iptables=false >/var/log/mayfly-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if engine_up; then
    log "Docker engine answers"
    exit 0
  fi
  sleep 0.5
done
log "the Docker engine did not come up; see /var/log/mayfly-dockerd.log"
tail -20 /var/log/mayfly-dockerd.log >&2 || true
exit 1
