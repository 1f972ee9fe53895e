#!/usr/bin/env bash
# Installs every Debian package Portico's build, tests, demo and benchmark need.
# Idempotent: packages already present are skipped by apt-get. Runs as root
# (or through sudo when available).
#   --build-only   only what building the gateway needs (toolchain, libraries): deploy/Dockerfile's
#                  build stage runs this script, so the image and the dev machine cannot drift
#   --list         print the packages (one a line) instead of installing them
set -euo pipefail

BUILD_ONLY=0
LIST=0
for a in "$@"; do
  case "$a" in
    --build-only) BUILD_ONLY=1 ;;
    --list) LIST=1 ;;
    *) echo "install-deps: unknown option $a" >&2; exit 2 ;;
  esac
done

PKGS=(
  # toolchain
  build-essential cmake pkg-config git clang clang-tidy cppcheck libfuzzer-14-dev libclang-rt-14-dev
  # libraries
  libnghttp2-dev libssl-dev libevent-dev libhttp-parser-dev libyaml-dev libjson-c-dev
  libcurl4-openssl-dev libpcre2-dev libxml2-dev libwslay-dev libhiredis-dev
  zlib1g-dev libbrotli-dev libzstd-dev libcmocka-dev
  libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
  libgrpc-dev libgrpc++-dev protobuf-compiler-grpc
  # waf filter: ModSecurity v3 and the OWASP Core Rule Set
  libmodsecurity-dev libmodsecurity3 modsecurity-crs
)
PKGS_TEST=(
  # nginx's ModSecurity module, for the waf benchmark's peer
  libnginx-mod-http-modsecurity
  # test clients, peers and benchmark tools
  curl openssl nghttp2-client nghttp2-proxy nghttp2-server wrk nginx-light redis-server
  python3-grpcio python3-protobuf python3-h2 python3-hyperframe python3-hpack
  python3-jwt python3-cryptography  # jwt tests: tokens of every algorithm
  zstd  # the zstd CLI: compression tests decode/encode zstd bodies with it
  nodejs npm procps psmisc iproute2 time
  # a real browser for the WebSocket <-> gRPC bridge test (headless, driven over DevTools)
  chromium
)
if [ "$BUILD_ONLY" = 0 ]; then PKGS+=("${PKGS_TEST[@]}"); fi
if [ "$LIST" = 1 ]; then printf '%s\n' "${PKGS[@]}"; exit 0; fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# node and npm may come from elsewhere on some machines; only ask apt when absent.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  tmp=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]}")
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# nginx-light's package starts a system nginx on :80; the project runs its own
# instances on free ports, so the system one is not needed.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; fi
echo "install-deps: ok"
