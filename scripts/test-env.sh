#!/usr/bin/env bash
# Prepares what integration tests need beyond Debian packages: the npm test
# clients under test/integration/node_modules and the example SOAP service's
# packages under examples/soap/node_modules (installed from the npm registry,
# again when a package.json names something not installed yet).
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in test/integration examples/soap; do
  [ -f "$dir/package.json" ] || continue
  if [ -d "$dir/node_modules" ] && (cd "$dir" && npm ls --depth=0 >/dev/null 2>&1); then
    continue
  fi
  # one retry: a registry hiccup should not fail the whole run
  (cd "$dir" && { npm install --no-audit --no-fund --loglevel=error ||
                  { sleep 5; npm install --no-audit --no-fund --loglevel=error; }; })
done
