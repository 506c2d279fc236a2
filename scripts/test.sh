#!/usr/bin/env bash
# gmgate's one test command: installs what the tests need when missing, starts the real services they use
# (a Redis on a free loopback port, a fresh SoftHSM2 token directory), runs every test (the race detector on
# the core packages), and stops what it started. Usage: scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '==> %s\n' "$*" >&2; }

# 1. Debian packages the tests use for real (no mocks): SoftHSM2 (PKCS#11) and Redis.
need=()
command -v go >/dev/null || { echo "Go 1.26 is required (https://go.dev/dl/)" >&2; exit 1; }
command -v softhsm2-util >/dev/null && [ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. Go modules.
log "downloading Go modules"
go mod download

# 3. Services, all under one scratch directory that is removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/gmgate-test.XXXXXX")
redis_pid=""
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || echo $((20000 + RANDOM % 20000)); }

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" \
  --logfile "$work/redis.log" >/dev/null 2>&1 &
redis_pid=$!
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null || { echo "redis-server did not start" >&2; cat "$work/redis.log" >&2; exit 1; }
log "redis on 127.0.0.1:$redis_port"

mkdir -p "$work/softhsm/tokens"
cat > "$work/softhsm/softhsm2.conf" <<CONF
directories.tokendir = $work/softhsm/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
log "SoftHSM2 token directory $work/softhsm/tokens"

export GMGATE_REDIS_ADDR="127.0.0.1:$redis_port"
export SOFTHSM2_CONF="$work/softhsm/softhsm2.conf"
export GMGATE_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
export GMGATE_REQUIRE_SERVICES=1
export GMGATE_TEST_SCRATCH="$work"

# 4. One gmgate binary shared by every end-to-end test.
log "building gmgate"
go build -o "$work/gmgate" ./cmd/gmgate
export GMGATE_BIN="$work/gmgate"

# 5. Tests: the race detector on the core packages, the rest as they are.
core=()
for p in pki tlcp keyvault signing audit gateway channel client; do
  [ -d "$p" ] && core+=("./$p/...")
done
rest=$(go list ./... | grep -v -E "/(pki|tlcp|keyvault|signing|audit|gateway|channel|client)(/|$)" || true)
status=0
if [ ${#core[@]} -gt 0 ]; then
  log "go test -race ${core[*]}"
  go test -race -count=1 -timeout 30m "$@" "${core[@]}" || status=1
fi
if [ -n "$rest" ]; then
  log "go test (Caddy modules, binary, end-to-end)"
  # shellcheck disable=SC2086
  go test -count=1 -timeout 30m "$@" $rest || status=1
fi
exit $status
