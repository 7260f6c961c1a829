#!/usr/bin/env bash
# `make spec-lint`: api/openapi.yaml through the pinned Redocly CLI (0 errors
# and 0 warnings, recommended rules) and api/asyncapi.yaml through the pinned
# @asyncapi/parser (no errors or warnings). The tools are pinned in
# .ci/node/package-lock.json and installed from the npm registry on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=.ci/node
if [[ ! -x $tools/node_modules/.bin/redocly || $tools/package-lock.json -nt $tools/node_modules/.package-lock.json ]]; then
  echo "== npm ci ($tools)"
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "== redocly lint api/openapi.yaml"
out=$("$tools/node_modules/.bin/redocly" lint --config "$tools/redocly.yaml" --format=stylish api/openapi.yaml 2>&1) || { echo "$out"; exit 1; }
if grep -Eq '^ +[0-9]+:[0-9]+ +(error|warning) ' <<<"$out"; then
  grep -E '^ +[0-9]+:[0-9]+ +(error|warning) ' <<<"$out"
  echo "api/openapi.yaml: Redocly reports problems (0 errors, 0 warnings wanted)"
  exit 1
fi
echo "== asyncapi parser api/asyncapi.yaml"
node "$tools/asyncapi-lint.mjs" api/asyncapi.yaml
