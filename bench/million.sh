#!/usr/bin/env bash
# bench/million.sh [--devices N]: iotgate with a fleet of N Lierda devices in Redis (default 1,000,000), next to plain
# mosquitto in the same run. Measures (issue 18):
#   start     from starting the broker to its first accepted login (a probe logs in every 50 ms), and to "loaded"
#   memory    RSS of the broker and of its store process once loaded and idle (plain mosquitto's for comparison)
#   storm     connect storms of 20,000 devices (64 in flight), first and warm logins, iotgate / plain, 3 rounds
#   reload    QoS 0 publishing of 1,000 devices to iotgate while the plugin reloads everything from Redis (its
#             changes stream trimmed and its connections killed): the longest gap between deliveries
# Targets: first login <= 10 s after start, broker RSS <= 200 MB, warm storm >= 0.90, reload gap <= 100 ms.
# Prints a table and appends JSON lines to bench/results/<UTC time>-million.jsonl (IOTGATE_BENCH_RESULTS: another
# folder). Environment: IOTGATE_BUILD_DIR (default build-bench/ in the checkout, as bench/run.sh), IOTGATE_MILLION_STORM
# (devices per connect storm, default 20,000).
set -euo pipefail
export LC_ALL=C

root="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${IOTGATE_BUILD_DIR:-$root/build-bench}"
RESULTS_DIR="${IOTGATE_BENCH_RESULTS:-$root/bench/results}"
DEVICES=1000000
while (( $# )); do
  case $1 in
    --devices) DEVICES=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "million.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
STORM=${IOTGATE_MILLION_STORM:-20000}
ROUNDS=3
(( DEVICES > ROUNDS * STORM )) || { echo "million.sh: --devices must exceed $((ROUNDS * STORM))" >&2; exit 2; }
PREFIX="iotgate:"
log() { printf '[million %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

log "building into $BUILD"
cmake -S "$root" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOTGATE_BENCH=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target iotgate iotgate_loadgen >/dev/null
LOADGEN="$BUILD/iotgate_loadgen"
COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
mkdir -p "$RESULTS_DIR"
RESULTS="$RESULTS_DIR/$(date -u +%Y%m%dT%H%M%SZ)-million.jsonl"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iotgate-million.XXXXXXXX")
declare -A PID=() PORT=()
cleanup() {
  local p
  for p in "${PID[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf -- "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
store_pid() { cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{print $1}'; }

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --save '' --appendonly no --daemonize no \
  --logfile "$WORK/redis.log" &
PID[redis]=$!
rcli() { timeout 60 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
for _ in $(seq 50); do rcli ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
log "loading $DEVICES devices"
"$LOADGEN" populate --devices "$DEVICES" --prefix "$PREFIX" | timeout 900 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --pipe \
  >"$WORK/pipe.log" 2>&1 || die "redis-cli --pipe failed: $(tail -3 "$WORK/pipe.log")"
[[ $(rcli scard "${PREFIX}devices:BE5C0D01") == "$DEVICES" ]] || die "device count in redis is wrong"
SUB_PASS="bench-$RANDOM$RANDOM"
IOTGATE_REDIS="redis://127.0.0.1:$REDIS_PORT/0" IOTGATE_PREFIX="$PREFIX" "$root/scripts/iotgate" \
  account add benchsub --password "$SUB_PASS" --allow 'read /sys/#' >/dev/null
log "redis holds $(rcli dbsize) keys, $(rcli info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')"

start_broker() {  # start_broker NAME
  local name=$1 dir="$WORK/$1"
  mkdir -p "$dir"
  PORT[$name]=$(free_port)
  {
    echo "listener ${PORT[$name]} 127.0.0.1"
    echo "persistence false"
    echo "log_dest file $dir/mosquitto.log"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "connection_messages false"
    echo "max_connections -1"
    [[ $(id -u) == 0 ]] && echo "user root"
    if [[ $name == iotgate ]]; then
      echo "allow_anonymous false"
      echo "plugin $BUILD/iotgate.so"
      echo "plugin_opt_redis_port $REDIS_PORT"
      echo "plugin_opt_key_prefix $PREFIX"
    else
      echo "allow_anonymous true"
    fi
  } >"$dir/mosquitto.conf"
  mosquitto -c "$dir/mosquitto.conf" >"$dir/out" 2>&1 &
  PID[$name]=$!
}
record() { printf '%s\n' "$1" >>"$RESULTS"; }
record "{\"mode\":\"machine\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"devices\":$DEVICES,\"nproc\":$(nproc),\"commit\":\"$COMMIT\"}"

# ---- start: time to the first accepted login (the last device of the fleet, type 0: no timestamp rules)
start_broker plain
t0=$(now_ms)
start_broker iotgate
first_ms=''
for _ in $(seq 1200); do
  if "$LOADGEN" connect --port "${PORT[iotgate]}" --count 1 --first $((DEVICES - 1)) --login v2t0 --timeout 2 \
      --label probe --scenario probe 2>/dev/null | grep -q '"ok":1'; then
    first_ms=$(( $(now_ms) - t0 )); break
  fi
  sleep 0.05
done
[[ -n $first_ms ]] || die "no login accepted within a minute of the start"
for _ in $(seq 600); do grep -q "iotgate: loaded" "$WORK/iotgate/mosquitto.log" && break; sleep 0.1; done
loaded_ms=$(( $(now_ms) - t0 ))
log "first accepted login ${first_ms} ms after start; loaded seen after ${loaded_ms} ms"
sleep 5
broker_kb=$(rss_kb "${PID[iotgate]}")
store_kb=$(rss_kb "$(store_pid "${PID[iotgate]}")")
plain_kb=$(rss_kb "${PID[plain]}")
log "idle RSS: iotgate broker ${broker_kb} kB, its store process ${store_kb} kB, plain mosquitto ${plain_kb} kB"
record "{\"mode\":\"start\",\"first_login_ms\":$first_ms,\"loaded_ms\":$loaded_ms,\"broker_rss_kb\":$broker_kb,\"store_rss_kb\":$store_kb,\"plain_rss_kb\":$plain_kb}"

# ---- storms: first and warm logins of the same 20,000 devices, plain and iotgate taking turns
# CPUs as bench/run.sh places them: both brokers on the last CPU, redis-server and iotgate's store process on the
# others (the start above ran unpinned, as a broker starts by default). On one CPU nothing is pinned.
if (( $(nproc) >= 2 )); then
  BROKER_CPUS=$(( $(nproc) - 1 )) OTHER_CPUS="0-$(( $(nproc) - 2 ))"
  for b in plain iotgate; do taskset -a -p -c "$BROKER_CPUS" "${PID[$b]}" >/dev/null; done
  for p in "${PID[redis]}" "$(store_pid "${PID[iotgate]}")"; do taskset -a -p -c "$OTHER_CPUS" "$p" >/dev/null; done
  log "pinned: brokers on CPU $BROKER_CPUS; redis-server and the store process on CPUs $OTHER_CPUS"
fi
declare -A RATES=()
for ((round = 0; round < ROUNDS; round++)); do
  for pass in first warm; do
    for b in plain iotgate; do
      line=$("$LOADGEN" connect --port "${PORT[$b]}" --count "$STORM" --first $((round * STORM)) --concurrency 64 \
        --threads 2 --login v2t1 --label "$b" --scenario "million-$pass" --pass "$pass" --deadline 600 2>/dev/null | tail -n 1)
      record "$line"
      rate=$(python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["rate"])' <<<"$line")
      RATES[$pass/$b]+="$rate "
      log "$pass $b: ${rate} conn/s"
      sleep 1.2  # type-1 timestamps must be later than the devices' last logout (whole seconds)
    done
  done
done
ratio() {  # ratio PASS: the median over rounds of iotgate / plain
  python3 - "${RATES[$1/iotgate]}" "${RATES[$1/plain]}" <<'EOF'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
print("%.2f" % statistics.median([x / y for x, y in zip(a, b)]))
EOF
}
first_ratio=$(ratio first)
warm_ratio=$(ratio warm)

# ---- reload under traffic: the changes stream trimmed and the plugin's connections killed, so it loads everything
reload_from=$(wc -c <"$WORK/iotgate/mosquitto.log")
(
  sleep 6
  rcli XTRIM "${PREFIX}changes" MAXLEN 0 >/dev/null
  rcli CLIENT KILL TYPE normal SKIPME yes >/dev/null
) &
trigger=$!
line=$("$LOADGEN" publish --port "${PORT[iotgate]}" --devices 1000 --first 0 --qos 0 --warmup 2 --duration 20 \
  --sub-user benchsub --sub-pass "$SUB_PASS" --label iotgate --scenario million-reload 2>/dev/null | tail -n 1)
wait "$trigger"
record "$line"
gap=$(python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["max_gap_ms"])' <<<"$line")
reloaded=$(tail -c +$((reload_from + 1)) "$WORK/iotgate/mosquitto.log" | grep -c "iotgate: reloaded" || true)
log "reload during publishing: longest delivery gap ${gap} ms (loads seen in the log: $reloaded)"
record "{\"mode\":\"reload\",\"max_gap_ms\":$gap,\"loads_seen\":$reloaded}"

cat <<EOF

iotgate $COMMIT with $DEVICES devices in Redis ($(nproc) CPUs)

| measurement | value | target |
|---|---:|---|
| start to the first accepted login | $first_ms ms | <= 10000 ms |
| start to "iotgate: loaded" in the log (seen by polling) | $loaded_ms ms | |
| broker RSS, loaded and idle (plain mosquitto: $plain_kb kB) | $broker_kb kB | <= 204800 kB |
| store process RSS | $store_kb kB | |
| connect storm, first logins, iotgate / plain (median of $ROUNDS rounds; rates ${RATES[first/iotgate]}/ ${RATES[first/plain]}) | $first_ratio | |
| connect storm, warm logins, iotgate / plain (median of $ROUNDS rounds; rates ${RATES[warm/iotgate]}/ ${RATES[warm/plain]}) | $warm_ratio | >= 0.90 |
| full reload during QoS 0 publishing: longest delivery gap (loads seen: $reloaded) | $gap ms | <= 100 ms |

raw results: $RESULTS
EOF
