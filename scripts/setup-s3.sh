#!/usr/bin/env bash
# Builds versitygw, the S3-compatible server the S3 blob store's tests run
# against, into bin/tools (git-ignored). Safe to run again: the build (a few
# minutes) is skipped when the binary of the pinned version is already there.
set -euo pipefail

log() { printf 'setup-s3: %s\n' "$*" >&2; }

cd "$(dirname "$0")/.."

# Pinned: a new release is taken on purpose, not by surprise.
version=v1.8.0
bin=bin/tools/versitygw
stamp=bin/tools/versitygw.version

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  log "$bin $version is current"
  exit 0
fi
GO=${GO:-go}
command -v "$GO" >/dev/null 2>&1 || GO=/usr/local/go/bin/go
log "building versitygw $version into $bin (takes a few minutes)"
mkdir -p bin/tools
start=$(date +%s)
GOBIN="$PWD/bin/tools" "$GO" install "github.com/versity/versitygw/cmd/versitygw@$version"
echo "$version" >"$stamp"
log "built in $(($(date +%s) - start))s"
