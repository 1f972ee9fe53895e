#!/usr/bin/env bash
# Prepares what integration tests need beyond Debian packages: the npm test
# clients under test/integration/node_modules (installed once, from the npm registry).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f test/integration/package.json ] && [ ! -d test/integration/node_modules ]; then
  # one retry: a registry hiccup should not fail the whole run
  (cd test/integration && { npm install --no-audit --no-fund --loglevel=error ||
                            { sleep 5; npm install --no-audit --no-fund --loglevel=error; }; })
fi
