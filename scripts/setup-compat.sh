#!/usr/bin/env bash
# Installs what the client compatibility tests need: Node.js and npm
# (Debian packages nodejs and npm) when missing, and the official IronWorker
# Node.js client into compat/node from its lockfile. Safe to run again:
# `npm ci` runs only when node_modules is missing or older than the
# lockfile.
set -euo pipefail

log() { printf 'setup-compat: %s\n' "$*" >&2; }

cd "$(dirname "$0")/.."

need_pkgs=()
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing packages: ${need_pkgs[*]}; run as root or install them yourself"
    exit 1
  fi
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

dir=compat/node
stamp=$dir/node_modules/.package-lock.json
if [ -f "$stamp" ] && [ -f "$dir/node_modules/iron_worker/package.json" ] &&
  [ ! "$dir/package-lock.json" -nt "$stamp" ] && [ ! "$dir/package.json" -nt "$stamp" ]; then
  log "compat/node/node_modules is current"
  exit 0
fi
log "installing the IronWorker Node.js client into $dir (npm ci)"
(cd "$dir" && npm ci --no-audit --no-fund)
