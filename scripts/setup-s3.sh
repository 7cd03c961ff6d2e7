#!/usr/bin/env bash
# Builds versitygw, the S3-compatible server the S3 blob store's tests run
# against, into bin/tools (git-ignored). Safe to run again: the build (a few
# minutes) happens once per machine: the binary of the pinned version is
# kept in $MAYFLY_TOOLS (default ~/.cache/mayfly/tools) and copied from
# there into each checkout.
set -euo pipefail

log() { printf 'setup-s3: %s\n' "$*" >&2; }

cd "$(dirname "$0")/.."

# Pinned: a new release is taken on purpose, not by surprise.
version=v1.8.0
bin=bin/tools/versitygw
stamp=bin/tools/versitygw.version
cache=${MAYFLY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/mayfly/tools}/versitygw-$version

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  log "$bin $version is current"
  exit 0
fi
mkdir -p bin/tools "$(dirname "$cache")"
if [ ! -x "$cache" ]; then
  GO=${GO:-go}
  command -v "$GO" >/dev/null 2>&1 || GO=/usr/local/go/bin/go
  log "building versitygw $version into $cache (takes a few minutes, once per machine)"
  start=$(date +%s)
  tmp=$(mktemp -d)
  GOBIN="$tmp" "$GO" install "github.com/versity/versitygw/cmd/versitygw@$version"
  mv "$tmp/versitygw" "$cache"
  rmdir "$tmp"
  log "built in $(($(date +%s) - start))s"
fi
cp "$cache" "$bin"
echo "$version" >"$stamp"
log "$bin $version from $cache"
