#!/bin/sh
# config-sync: renders Portico's config from a template (a ConfigMap volume)
# and, as a sidecar, reloads Portico when the ConfigMap changes.
#
#   config-sync --once   render TEMPLATE_DIR/portico.yaml to CONFIG (an initContainer)
#   config-sync          render, then every RELOAD_POLL_SECONDS re-render; when the
#                        result changed and `portico --validate` accepts it, move it in
#                        place and send SIGHUP to the portico process (the pod has
#                        shareProcessNamespace: true and both containers run as the
#                        same user). A config that does not validate is reported and
#                        never installed: the running one keeps serving.
#
# PORTICO_PID names the process to signal instead (tests).
# Rendering replaces ${REDIS_ADDR} with REDIS_HOST's address (getent) and REDIS_PORT:
# Portico's redis: targets take IP literals only (a load never waits for DNS).
set -eu
TEMPLATE_DIR=${TEMPLATE_DIR:-/etc/portico-template}
CONFIG=${CONFIG:-/etc/portico/portico.yaml}
POLL=${RELOAD_POLL_SECONDS:-5}
REDIS_HOST=${REDIS_HOST:-redis}
REDIS_PORT=${REDIS_PORT:-6379}
PORTICO=${PORTICO:-/usr/local/bin/portico}

render() { # -> $1
  ip=$(getent hosts "$REDIS_HOST" | awk 'NR==1 { print $1 }')
  if [ -z "$ip" ]; then
    echo "config-sync: cannot resolve $REDIS_HOST" >&2
    return 1
  fi
  case "$ip" in *:*) addr="[$ip]:$REDIS_PORT" ;; *) addr="$ip:$REDIS_PORT" ;; esac
  # the template's other files (certificates, descriptor sets) go beside the config
  dir=$(dirname "$CONFIG")
  for f in "$TEMPLATE_DIR"/*; do
    b=$(basename "$f")
    if [ -f "$f" ] && [ "$b" != portico.yaml ] && ! cmp -s "$f" "$dir/$b"; then
      cp "$f" "$dir/.$b.new" && mv "$dir/.$b.new" "$dir/$b"
    fi
  done
  sed "s|\${REDIS_ADDR}|$addr|g" "$TEMPLATE_DIR/portico.yaml" > "$1"
}

portico_pid() {
  if [ -n "${PORTICO_PID:-}" ]; then echo "$PORTICO_PID"; return 0; fi # tests: exactly this one
  for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = portico ] && { echo "${d#/proc/}"; return 0; }
  done
  return 1
}

if [ "${1:-}" = --once ]; then
  render "$CONFIG.new" && "$PORTICO" --validate -c "$CONFIG.new" >/dev/null && mv "$CONFIG.new" "$CONFIG"
  exit $?
fi

while :; do
  if render "$CONFIG.new"; then
    if ! cmp -s "$CONFIG.new" "$CONFIG"; then
      if "$PORTICO" --validate -c "$CONFIG.new" >&2; then
        mv "$CONFIG.new" "$CONFIG"
        if pid=$(portico_pid); then
          kill -HUP "$pid" && echo "config-sync: config changed, SIGHUP sent to portico ($pid)"
        fi
      else
        echo "config-sync: the new config does not validate; keeping the running one" >&2
      fi
    fi
  fi
  sleep "$POLL"
done
