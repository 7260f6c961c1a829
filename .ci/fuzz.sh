#!/usr/bin/env bash
# Runs every fuzz target of every module for a fixed budget: N executions
# ("100000x", the default) or a duration ("30s"; see the Makefile about
# go1.26 and durations).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-100000x}
for m in shared backend agent; do
  (cd "$m" && go list -f '{{.Dir}}' ./...) | while read -r dir; do
    for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      echo "== fuzz $m ${dir#$PWD/} $f ($t)"
      (cd "$dir" && go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -timeout 5m .)
    done
  done
done
