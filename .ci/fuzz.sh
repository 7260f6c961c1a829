#!/usr/bin/env bash
# Runs every fuzz target of every module for a fixed time (default 10s each).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
for m in shared backend agent; do
  (cd "$m" && go list -f '{{.Dir}}' ./...) | while read -r dir; do
    for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      echo "== fuzz $m ${dir#$PWD/} $f ($t)"
      (cd "$dir" && go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" .)
    done
  done
done
