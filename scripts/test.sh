#!/usr/bin/env bash
# gmgate's one test command: installs what the tests need when missing, starts the real services they use
# (on free loopback ports: a Redis, a 3-master Redis Cluster, a Redis master + replica watched by 3 Sentinels;
# a fresh SoftHSM2 token directory), runs every test (the race detector on the core packages), and stops what
# it started. Usage: scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '==> %s\n' "$*" >&2; }

# 0. One full run at a time per machine: runs started side by side (several worktrees) would share the
# CPUs and time each other out. GMGATE_TEST_LOCK=off skips the queue.
if [ "${GMGATE_TEST_LOCK:-on}" != off ] && command -v flock >/dev/null; then
  exec 9>"${TMPDIR:-/tmp}/gmgate-test.lock"
  if ! flock -n 9; then
    log "another scripts/test.sh is running on this machine: waiting for it"
    flock 9
  fi
fi

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

# 3. Services, all under one scratch directory that is removed on exit. Every Redis process writes its
# pid to <its dir>/redis.pid and its command line to <its dir>/argv (NUL-separated): a test that kills
# one restarts it with that command line, so the same pidfile, which cleanup reads.
work=$(mktemp -d "${TMPDIR:-/tmp}/gmgate-test.XXXXXX")
cleanup() {
  local f
  for f in "$work"/redis-*/redis.pid; do
    [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 0.2
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

used_ports=" "
free_port() {
  local p
  for _ in $(seq 1 20); do
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
      || echo $((20000 + RANDOM % 20000)))
    case "$used_ports" in *" $p "*) continue ;; esac
    used_ports="$used_ports$p "
    echo "$p"
    return
  done
  echo "no free port" >&2; exit 1
}

# start_redis NAME PORT [redis-server arguments...]: a redis-server (or, with --sentinel, a Sentinel) in
# $work/redis-NAME, waiting (bounded) until it answers PING.
start_redis() {
  local name=$1 port=$2; shift 2
  local dir="$work/redis-$name"
  local argv=(redis-server "$@" --bind 127.0.0.1 --port "$port" --dir "$dir" --logfile "$dir/redis.log"
    --pidfile "$dir/redis.pid")
  mkdir -p "$dir"
  printf '%s\0' "${argv[@]}" >"$dir/argv"
  "${argv[@]}" >/dev/null 2>&1 9>&- &  # 9: the run lock stays with this script
  disown  # no job-control notice when a test kills it
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ${REDISCLI_AUTH:+--no-auth-warning} ping 2>/dev/null | grep -q PONG && return
    sleep 0.1
  done
  echo "redis $name did not start" >&2; cat "$dir/redis.log" >&2; exit 1
}
plain=(--save "" --appendonly no)

redis_port=$(free_port)
start_redis single "$redis_port" "${plain[@]}"
log "redis on 127.0.0.1:$redis_port"

# Redis Cluster: three masters (no replicas), slots assigned by redis-cli.
cluster=()
for i in 1 2 3; do
  p=$(free_port)
  start_redis "cluster$i" "$p" "${plain[@]}" --cluster-enabled yes --cluster-port "$(free_port)" \
    --cluster-config-file "$work/redis-cluster$i/nodes.conf" --cluster-node-timeout 2000
  cluster+=("127.0.0.1:$p")
done
redis-cli --cluster create "${cluster[@]}" --cluster-yes >"$work/cluster-create.log" 2>&1 \
  || { echo "redis-cli --cluster create failed" >&2; cat "$work/cluster-create.log" >&2; exit 1; }
for a in "${cluster[@]}"; do
  for _ in $(seq 1 100); do
    redis-cli -p "${a##*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
    sleep 0.1
  done
  redis-cli -p "${a##*:}" cluster info | grep -q 'cluster_state:ok' || { echo "cluster node $a not ok" >&2; exit 1; }
done
log "redis cluster on ${cluster[*]}"

# Sentinel: a master, two replicas, three Sentinels (quorum 2) with a password of their own. The tests
# wait for the Sentinels to find each other (Sentinel hellos every 2 s) while the binary builds.
sentinel_master=gmgate-test
sentinel_password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
sm_port=$(free_port)
start_redis smaster "$sm_port" "${plain[@]}"
replicas=()
for i in 1 2; do
  p=$(free_port)
  start_redis "sreplica$i" "$p" "${plain[@]}" --replicaof 127.0.0.1 "$sm_port"
  replicas+=("127.0.0.1:$p")
done
sentinels=()
for i in 1 2 3; do
  p=$(free_port)
  mkdir -p "$work/redis-sentinel$i"
  cat > "$work/redis-sentinel$i/sentinel.conf" <<CONF
requirepass $sentinel_password
sentinel monitor $sentinel_master 127.0.0.1 $sm_port 2
sentinel down-after-milliseconds $sentinel_master 1000
sentinel failover-timeout $sentinel_master 10000
sentinel parallel-syncs $sentinel_master 1
CONF
  REDISCLI_AUTH=$sentinel_password start_redis "sentinel$i" "$p" "$work/redis-sentinel$i/sentinel.conf" --sentinel
  sentinels+=("127.0.0.1:$p")
done
log "redis sentinel: master $sentinel_master on 127.0.0.1:$sm_port, replicas ${replicas[*]}, sentinels ${sentinels[*]}"

mkdir -p "$work/softhsm/tokens"
cat > "$work/softhsm/softhsm2.conf" <<CONF
directories.tokendir = $work/softhsm/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
log "SoftHSM2 token directory $work/softhsm/tokens"

export GMGATE_REDIS_ADDR="127.0.0.1:$redis_port"
export GMGATE_REDIS_CLUSTER_ADDRS=$(IFS=,; echo "${cluster[*]}")
export GMGATE_REDIS_SENTINEL_ADDRS=$(IFS=,; echo "${sentinels[*]}")
export GMGATE_REDIS_SENTINEL_MASTER=$sentinel_master
export GMGATE_REDIS_SENTINEL_PASSWORD=$sentinel_password
export SOFTHSM2_CONF="$work/softhsm/softhsm2.conf"
export GMGATE_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
export GMGATE_REQUIRE_SERVICES=1
export GMGATE_TEST_SCRATCH="$work"

# 4. The build without cgo (no PKCS#11 backend) must keep compiling, tests included
# (integration/nocgo_test.go builds and runs that binary).
log "go vet without cgo"
CGO_ENABLED=0 go vet ./...

# 5. One gmgate binary shared by every end-to-end test.
log "building gmgate"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
[ -n "$commit" ] && [ -n "$(git status --porcelain 2>/dev/null | head -1)" ] && commit="$commit+modified"
go build -ldflags "-X github.com/gmgate/gmgate/caddymodule.ReleaseCommit=$commit" -o "$work/gmgate" ./cmd/gmgate
export GMGATE_EXPECT_COMMIT="$commit"
export GMGATE_BIN="$work/gmgate"

# 6. Tests: the race detector on the core packages, the rest as they are.
core=()
for p in pki tlcp tls13sm keyvault signing envelope audit refusal sealstore gateway channel client cosign enroll cryptosvc internal/peerverify internal/firstrecord internal/lru internal/dialhs internal/recordio internal/testpki internal/abuse internal/conncore; do
  [ -d "$p" ] && core+=("./$p/...")
done
rest=$(go list ./... | grep -v -E "/(pki|tlcp|tls13sm|keyvault|signing|envelope|audit|refusal|sealstore|gateway|channel|client|cosign|enroll|cryptosvc|internal/peerverify|internal/firstrecord|internal/lru|internal/dialhs|internal/recordio|internal/testpki|internal/abuse|internal/conncore)(/|$)" || true)
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
