#!/usr/bin/env bash
# bench/run.sh [--quick] [--keep-temp]: iotgate against plain mosquitto, side by side, in one run.
#
# Builds iotgate.so and iotgate_loadgen (cmake -DIOTGATE_BENCH=ON into $IOTGATE_BUILD_DIR, default
# build-bench/ in the checkout), starts a redis-server with N Lierda devices and a service account, then brokers on their own
# loopback ports: plain mosquitto (allow_anonymous true), mosquitto + iotgate, and mosquitto with a password_file
# of the same devices. Runs the connect storm, publish throughput, idle sessions (memory), Redis-stalled and OTA
# (firmware reports) scenarios on each, prints the table and keeps the raw JSON lines in bench/results/.
# docs/benchmarks.md explains the scenarios and the latest numbers.
#
# Environment: IOTGATE_BUILD_DIR (build directory), IOTGATE_BENCH_NICE (niceness of the brokers, redis-server
# and the load generator; default -10 when root, so other work on the machine disturbs the numbers less; 0 to
# leave it), IOTGATE_BENCH_RESULTS (where results go; default bench/results), IOTGATE_BENCH_QUIET_WAIT (seconds
# to wait for other processes to go quiet before measuring; default 300, 0 with --quick), IOTGATE_BENCH_SCENARIOS
# (which scenarios to run, in their fixed order; default all: "connect nowrites publish lierda hold stall ota micro"),
# IOTGATE_BENCH_DEVICES (devices in Redis for a full run; default 100,000; bench/million.sh's storm uses 1,000,000).
set -euo pipefail
export LC_ALL=C

root="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${IOTGATE_BUILD_DIR:-$root/build-bench}"
RESULTS_DIR="${IOTGATE_BENCH_RESULTS:-$root/bench/results}"
QUICK=0
KEEP_TEMP=0
SCENARIOS="${IOTGATE_BENCH_SCENARIOS:-connect nowrites publish lierda hold stall ota micro}"
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --keep-temp) KEEP_TEMP=1 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$arg' (--quick, --keep-temp)" >&2; exit 2 ;;
  esac
done

if [[ $QUICK == 1 ]]; then
  SIZE=quick
  DEVICES=20000        # devices in Redis (and users in the password_file)
  PASS=4000            # logins per connect pass
  CONNECT_REPS=1       # passes per broker and kind (first, warm); each first pass uses fresh devices
  PUB_DEVICES=500
  PUB_SECS=4
  PUB_REPS=1
  HOLD=4000
  STALL_SECS=12
  STALL_LOGINS=50
  LIERDA_REPS=1
  NOWRITE_REPS=1
  OTA_DEVICES=500
  OTA_SECS=4           # fixed-rate part and saturated part each
  OTA_REPS=1
  ATTEMPTS=1           # no repeats of disturbed runs
  REPEAT_BUDGET=0
  QUIET_WAIT=${IOTGATE_BENCH_QUIET_WAIT:-0}   # seconds to wait for other processes to calm down first
else
  SIZE=full
  DEVICES=${IOTGATE_BENCH_DEVICES:-100000}
  PASS=20000
  CONNECT_REPS=4
  PUB_DEVICES=1000
  PUB_SECS=6           # short runs, many rounds: the host's load drifts less within a round
  PUB_REPS=15          # the median of many rounds: one round's ratio spreads 0.93-1.00 at QoS 0, 0.88-1.04 at QoS 1
  LIERDA_REPS=2
  NOWRITE_REPS=2
  OTA_DEVICES=1000
  OTA_SECS=10
  OTA_REPS=3
  ATTEMPTS=2          # a disturbed run is repeated once...
  REPEAT_BUDGET=20    # ...while this many repeats are left (keeps a noisy machine's run under ~25 minutes)
  QUIET_WAIT=${IOTGATE_BENCH_QUIET_WAIT:-300}
  HOLD=19000           # the machine's hard RLIMIT_NOFILE is 20000: one broker cannot hold 20,000 sockets
  STALL_SECS=16
  STALL_LOGINS=200
fi
STALL_AT=4
STALL_FOR=5
CONCURRENCY=64         # connects in flight (mosquitto listens with a backlog of 100)
OTA_RATE=2000          # firmware reports per second in the OTA scenario's fixed-rate part
PREFIX="iotgate:"

if [[ $(id -u) == 0 ]]; then NICE="${IOTGATE_BENCH_NICE:--10}"; else NICE="${IOTGATE_BENCH_NICE:-0}"; fi

# CPUs: every broker on the last CPU; redis-server, iotgate's store process and the publish load generator on the
# others, as a broker serving devices over the network has its CPU to itself. The publish load generator then polls
# its sockets without sleeping (--spin), so the broker never pays for waking it. On one CPU nothing is pinned.
NCPU="$(nproc)"
if (( NCPU >= 2 )); then
  BROKER_CPUS=$(( NCPU - 1 ))
  LOAD_CPUS="0-$(( NCPU - 2 ))"
  SPIN=(--spin)
else
  BROKER_CPUS=0
  LOAD_CPUS=0
  SPIN=()
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in cmake mosquitto redis-server redis-cli mosquitto_passwd timeout; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || die "$tool not found (scripts/install-deps)"
done
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

# File descriptors: each broker needs one per session; raise the soft limit to the hard one.
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -Sn)"
if [[ $NOFILE != unlimited ]] && (( HOLD + 200 > NOFILE )); then
  HOLD=$(( (NOFILE - 1000) / 1000 * 1000 ))
  log "RLIMIT_NOFILE is $NOFILE: holding $HOLD sessions"
fi

# ------------------------------------------------------------------------------------------ processes

WORK="$(mktemp -d /tmp/iotgate-bench-XXXXXX)"
declare -A PID=()   # name -> pid of everything started here

stop_pid() {  # stop_pid PID: SIGCONT + SIGTERM, up to 5 s, then SIGKILL
  local p=$1 i
  kill -0 "$p" 2>/dev/null || return 0
  kill -CONT "$p" 2>/dev/null || true
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}

cleanup() {
  local rc=$? name
  trap - EXIT INT TERM
  [[ -n ${PID[redis]:-} ]] && kill -CONT "${PID[redis]}" 2>/dev/null
  for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
  wait 2>/dev/null || true
  if [[ $KEEP_TEMP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$(( 20000 + RANDOM % 12000 ))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port"
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s
wait_for() {
  local secs=$1 i; shift
  for ((i = 0; i < secs * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}

LOADGEN=""
# lg ARGS...: runs the load generator (in the background, so that cleanup can stop it) and leaves its JSON line
# in $LINE; returns its exit status. Its human-readable line goes to stderr. With LG_CPUS set it runs there;
# otherwise on any CPU (the connect storms and OTA runs: their libmosquitto clients need more than one CPU).
LINE=""
lg() {
  local rc=0
  nice -n "$NICE" taskset -c "${LG_CPUS:-0-$(( NCPU - 1 ))}" "$LOADGEN" "$@" > "$WORK/lg.out" &
  PID[lg]=$!
  wait "${PID[lg]}" || rc=$?
  unset 'PID[lg]'
  LINE="$(cat "$WORK/lg.out")"
  return "$rc"
}

RESULTS=""
record() { cat >> "$RESULTS"; }   # JSON lines from stdin

# ------------------------------------------------------------------------------------------ build

# The iotgate source measured: HEAD, "+dirty" when the plugin's sources differ from it.
COMMIT="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -n "$(git -C "$root" status --porcelain -- src include plugin 2>/dev/null)" ]] && COMMIT="$COMMIT+dirty"
log "building $COMMIT into $BUILD"
cmake -S "$root" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOTGATE_BENCH=ON >"$WORK/cmake.log" 2>&1 ||
  { tail -30 "$WORK/cmake.log" >&2; die "cmake configure failed"; }
timeout 900 cmake --build "$BUILD" -j"$(nproc)" --target iotgate iotgate_loadgen iotgate_noop_plugin iotgate_gate_micro >>"$WORK/cmake.log" 2>&1 ||
  { tail -30 "$WORK/cmake.log" >&2; die "build failed"; }
LOADGEN="$BUILD/iotgate_loadgen"
PLUGIN="$BUILD/iotgate.so"
NOOP_PLUGIN="$BUILD/noop_plugin.so"
[[ -x $LOADGEN && -f $PLUGIN && -f $NOOP_PLUGIN ]] || die "build produced no $LOADGEN / $PLUGIN / $NOOP_PLUGIN"

mkdir -p "$RESULTS_DIR"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$RESULTS_DIR/$STAMP-$SIZE.jsonl"
: > "$RESULTS"

MOSQ_VERSION="$( ("$MOSQUITTO" -h 2>&1 || true) | sed -n 's/^mosquitto version \([^ ]*\).*/\1/p' | head -1)"
REDIS_VERSION="$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
MEM_KB="$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
printf '{"mode":"machine","date":"%s","size":"%s","nproc":%s,"mem_kb":%s,"mosquitto":"%s","redis":"%s","kernel":"%s","nice":"%s","nofile":"%s","devices":%s,"pass":%s,"hold":%s,"broker_cpus":"%s","load_cpus":"%s","commit":"%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SIZE" "$NCPU" "$MEM_KB" "$MOSQ_VERSION" "$REDIS_VERSION" "$(uname -r)" \
  "$NICE" "$NOFILE" "$DEVICES" "$PASS" "$HOLD" "$BROKER_CPUS" "$LOAD_CPUS" "$COMMIT" | record

# ------------------------------------------------------------------------------------------ redis + data

REDIS_PORT="$(free_port)"
mkdir -p "$WORK/redis"
nice -n "$NICE" taskset -c "$LOAD_CPUS" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes \
  --save '' --logfile "$WORK/redis/redis.log" --daemonize no &
PID[redis]=$!
rcli() { timeout 30 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
wait_for 10 bash -c "redis-cli -h 127.0.0.1 -p $REDIS_PORT ping 2>/dev/null | grep -q PONG" || die "redis-server did not start"

log "loading $DEVICES devices into redis (port $REDIS_PORT)"
"$LOADGEN" populate --devices "$DEVICES" --prefix "$PREFIX" | timeout 300 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --pipe >"$WORK/pipe.log" 2>&1 ||
  { cat "$WORK/pipe.log" >&2; die "redis-cli --pipe failed"; }
grep -q "errors: 0" "$WORK/pipe.log" || { cat "$WORK/pipe.log" >&2; die "bulk load had errors"; }
[[ "$(rcli scard "${PREFIX}devices:BE5C0D01")" == "$DEVICES" ]] || die "device count in redis is wrong"
SUB_USER=benchsub
SUB_PASS="bench-$RANDOM$RANDOM"
IOTGATE_REDIS="redis://127.0.0.1:$REDIS_PORT/0" IOTGATE_PREFIX="$PREFIX" timeout 60 "$root/scripts/iotgate" \
  account add "$SUB_USER" --password "$SUB_PASS" --allow 'read /sys/#' >/dev/null || die "cannot add the service account"

log "hashing $DEVICES passwords for the password_file broker (mosquitto_passwd -U)"
"$LOADGEN" passwd --devices "$DEVICES" > "$WORK/passwords"
timeout 900 mosquitto_passwd -U "$WORK/passwords" || die "mosquitto_passwd -U failed"

# ------------------------------------------------------------------------------------------ brokers

declare -A PORT=()
BROKER_TCP_NODELAY=0   # 1: set_tcp_nodelay true (the OTA scenario; see there)
# start_broker NAME: writes NAME's conf and starts it; waits until it listens (and for iotgate, has loaded)
start_broker() {
  local name=$1 dir port
  dir="$WORK/$name"
  mkdir -p "$dir"
  port="${PORT[$name]:-$(free_port)}"
  PORT[$name]=$port
  {
    echo "per_listener_settings false"
    echo "listener $port 127.0.0.1"
    echo "persistence false"
    echo "log_dest file $dir/mosquitto.log"
    # Errors, plus notices for iotgate's "loaded" line; connection_messages false keeps per-connection lines out.
    echo "log_type error"
    echo "log_type notice"
    echo "connection_messages false"
    echo "max_connections -1"
    echo "max_queued_messages 1000000"
    echo "max_inflight_messages 0"
    [[ $(id -u) == 0 ]] && echo "user root"
    [[ $BROKER_TCP_NODELAY == 1 ]] && echo "set_tcp_nodelay true"
    case $name in
      plain) echo "allow_anonymous true" ;;
      pwfile) echo "allow_anonymous false"; echo "password_file $WORK/passwords" ;;
      noop) echo "allow_anonymous false"; echo "plugin $NOOP_PLUGIN" ;;
      noopthread) echo "allow_anonymous false"; echo "plugin $NOOP_PLUGIN"; echo "plugin_opt_thread shared" ;;
      noopown) echo "allow_anonymous false"; echo "plugin $NOOP_PLUGIN"; echo "plugin_opt_thread own" ;;
      iotgate)
        echo "allow_anonymous false"
        echo "plugin $PLUGIN"
        echo "plugin_opt_redis_port $REDIS_PORT"
        echo "plugin_opt_key_prefix $PREFIX" ;;
    esac
  } > "$dir/mosquitto.conf"
  : > "$dir/mosquitto.log"
  nice -n "$NICE" taskset -c "$BROKER_CPUS" "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/mosquitto.out" 2>&1 &
  PID[$name]=$!
  wait_for 20 port_in_use "$port" || { cat "$dir/mosquitto.out" "$dir/mosquitto.log" >&2; die "$name broker did not start"; }
  if [[ $name == iotgate ]]; then
    # Its store process inherited the broker's CPU; it goes with redis-server, as any process not the broker.
    local kid
    for kid in $(cat "/proc/${PID[$name]}/task/${PID[$name]}/children" 2>/dev/null); do
      taskset -p -c "$LOAD_CPUS" "$kid" >/dev/null || die "cannot move the store process $kid to CPUs $LOAD_CPUS"
    done
    wait_for 60 grep -q "iotgate: loaded" "$dir/mosquitto.log" || { cat "$dir/mosquitto.log" >&2; die "iotgate did not load"; }
    log "iotgate: $(grep -o 'loaded.*' "$dir/mosquitto.log" | head -1)"
  fi
}
restart_broker() {
  stop_pid "${PID[$1]}"
  wait "${PID[$1]}" 2>/dev/null || true
  start_broker "$1"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# RSS of a broker's child processes (iotgate's store process), in kB.
children_rss_kb() {
  local c total=0
  for c in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do total=$(( total + $(rss_kb "$c") )); done
  echo "$total"
}

# Waits until iotgate's writer has applied its queued login/logout writes (redis goes quiet), at most 120 s.
quiesce() {
  local a b i
  for ((i = 0; i < 240; i++)); do
    a=$(rcli info stats | awk -F: '/^total_commands_processed/ {print $2+0}')
    sleep 0.5
    b=$(rcli info stats | awk -F: '/^total_commands_processed/ {print $2+0}')
    (( b - a <= 3 )) && return 0
  done
  log "redis still busy after 120 s"
}

for b in plain iotgate pwfile noop noopthread noopown; do start_broker "$b"; done
log "brokers: plain :${PORT[plain]}, iotgate :${PORT[iotgate]}, password_file :${PORT[pwfile]}; redis :$REDIS_PORT"

# CPU time to record for a run on broker $1: the broker, its store process (iotgate's), redis-server.
cpu_of() {
  local kid spec="broker=${PID[$1]},redis=${PID[redis]}"
  for kid in $(cat "/proc/${PID[$1]}/task/${PID[$1]}/children" 2>/dev/null); do spec+=",store=$kid"; done
  echo "$spec"
}
login_of() { [[ $1 == pwfile ]] && echo userpass || echo v2t1; }

# ------------------------------------------------------------------------------------------ scenarios

# A measurement during which other processes on the machine used more than NOISE_LIMIT % of one CPU (the load
# generator's "others") is kept in the results marked "noisy" and repeated (at most ATTEMPTS - 1 times; not in
# --quick mode); the report leaves noisy runs out.
NOISE_LIMIT=25
noisy() {  # noisy JSON_LINE WINDOW_FIELD: true when the run was disturbed and a repeat is still allowed
  local others secs
  (( REPEAT_BUDGET > 0 )) || return 1
  others=$(sed -n 's/.*"others":\([0-9]*\).*/\1/p' <<<"$1")
  secs=$(grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2)
  [[ -n $others && -n $secs ]] || return 1
  awk -v o="$others" -v s="$secs" -v lim="$NOISE_LIMIT" 'BEGIN { exit !(o / (s * 1000) * 100 > lim) }' || return 1
  REPEAT_BUDGET=$(( REPEAT_BUDGET - 1 ))
}
record_line() {  # record_line JSON_LINE [noisy|failed]
  [[ -n $1 ]] || return 0
  if [[ -n ${2:-} ]]; then sed "s/^{/{\"$2\":true,/" <<<"$1" | record; else printf '%s\n' "$1" | record; fi
}

# Connect storm: V2 type-1 logins (AES password), C in flight, DISCONNECT after each CONNACK. Pass "first":
# devices that have not logged in since the broker started; "warm": the same devices again. The password_file
# broker gets the same usernames with fixed passwords.
declare -A SPARE=()   # next unused device range per broker (repeats of a noisy first pass need fresh devices)
SPARE_END=$(( DEVICES - STALL_LOGINS ))
connect_pass() {  # connect_pass BROKER PASS FIRST
  local b=$1 pass=$2 first=$3 attempt line
  for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
    lg connect --port "${PORT[$b]}" --count "$PASS" --first "$first" --concurrency "$CONCURRENCY" \
      --threads 2 --login "$(login_of "$b")" --label "$b" --scenario "connect-$pass" --pass "$pass" \
      --cpu "$(cpu_of "$b")" --deadline 600 || log "connect $b $pass: not every login succeeded"
    line=$LINE
    [[ $b == iotgate ]] && quiesce
    sleep 1.2   # type-1 timestamps must be later than the devices' last disconnect (whole seconds)
    if (( attempt < ATTEMPTS )) && noisy "$line" seconds; then
      if [[ $pass == first ]]; then
        (( ${SPARE[$b]} + PASS <= SPARE_END )) || { record_line "$line"; return 0; }
        first=${SPARE[$b]}
        SPARE[$b]=$(( ${SPARE[$b]} + PASS ))
      fi
      record_line "$line" noisy
      log "other processes were busy during that pass; repeating it"
      continue
    fi
    record_line "$line"
    return 0
  done
}
scenario_connect() {
  local rep order pass b
  (( CONNECT_REPS * PASS <= SPARE_END )) || die "CONNECT_REPS * PASS exceeds the devices"
  for b in plain iotgate pwfile; do SPARE[$b]=$(( CONNECT_REPS * PASS )); done
  for pass in first warm; do
    for ((rep = 0; rep < CONNECT_REPS; rep++)); do
      # rotate the order so no broker always runs right after another one's storm
      case $((rep % 3)) in
        0) order="plain iotgate pwfile" ;;
        1) order="iotgate pwfile plain" ;;
        2) order="pwfile plain iotgate" ;;
      esac
      for b in $order; do connect_pass "$b" "$pass" $((rep * PASS)); done
    done
  done
}

# Diagnostic: warm passes on iotgate while redis-server is stopped (SIGSTOP), so the plugin holds its login and
# logout writes in memory instead of sending them; the difference to the normal warm pass is what those writes
# cost on this machine. (Redis resumes after each pass; the plugin then applies the held writes and reloads.)
scenario_connect_nowrites() {
  local rep line
  for ((rep = 0; rep < NOWRITE_REPS; rep++)); do
    kill -STOP "${PID[redis]}"
    lg connect --port "${PORT[iotgate]}" --count "$PASS" --first $((rep * PASS)) --concurrency "$CONCURRENCY" \
      --threads 2 --login v2t1 --label iotgate --scenario connect-warm-redis-stopped --pass warm \
      --cpu "$(cpu_of iotgate)" --deadline 600 || log "connect iotgate (redis stopped): not every login succeeded"
    kill -CONT "${PID[redis]}"
    record_line "$LINE"
    quiesce
    sleep 1.2
    lg connect --port "${PORT[plain]}" --count "$PASS" --first $((rep * PASS)) --concurrency "$CONCURRENCY" \
      --threads 2 --login v2t1 --label plain --scenario connect-warm-redis-stopped --pass warm \
      --cpu "$(cpu_of plain)" --deadline 600 || log "connect plain: not every login succeeded"
    record_line "$LINE"
    sleep 1.2
  done
}

# Publish: PUB_DEVICES devices each publish on /sys/OID/PID/EUI/uplink; one subscriber on /sys/# (the service
# account on iotgate, anonymous on plain) counts deliveries. At most 20,000 messages in flight end to end.
publish_run() {  # publish_run BROKER QOS SCENARIO ROUND [extra loadgen args]
  local b=$1 qos=$2 sc=$3 round=$4 attempt line; shift 4
  local sub=()
  [[ $b == iotgate ]] && sub=(--sub-user "$SUB_USER" --sub-pass "$SUB_PASS")
  for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
    LG_CPUS=$LOAD_CPUS lg publish --port "${PORT[$b]}" --devices "$PUB_DEVICES" --first 0 --qos "$qos" --warmup 2 \
      --label "$b" --scenario "$sc" --cpu "$(cpu_of "$b")" "${SPIN[@]}" "${sub[@]}" "$@" || log "publish $b $sc failed"
    # The round pairs this run with the other brokers' runs of the same repetition (the report's paired ratios).
    line=${LINE:+$(sed "s/^{/{\"round\":$round,/" <<<"$LINE")}
    [[ $b == iotgate ]] && quiesce
    sleep 1.5
    if (( attempt < ATTEMPTS )) && noisy "$line" duration; then
      record_line "$line" noisy
      log "other processes were busy during that run; repeating it"
      continue
    fi
    record_line "$line"
    return 0
  done
}
# The brokers of $PUB_BROKERS (default plain and iotgate) take turns, the order rotating with each repetition.
scenario_publish() {  # scenario_publish SCENARIO QOS REPS [extra loadgen args]
  local sc=$1 qos=$2 reps=$3 rep k; shift 3
  local brokers=(${PUB_BROKERS:-plain iotgate})
  for ((rep = 0; rep < reps; rep++)); do
    for ((k = 0; k < ${#brokers[@]}; k++)); do
      publish_run "${brokers[(rep + k) % ${#brokers[@]}]}" "$qos" "$sc" "$rep" "$@"
    done
  done
}

# Idle sessions: fresh plain and iotgate brokers; RSS before, then with HOLD sessions connected (several load
# generator processes: libmosquitto uses three descriptors per client).
scenario_hold() {
  local b per procs i first total ready rss0 rss1 up children_rss
  restart_broker plain
  restart_broker iotgate
  sleep 2
  for b in plain iotgate; do
    procs=$(( (HOLD + 4999) / 5000 ))
    per=$(( (HOLD + procs - 1) / procs ))
    rss0=$(rss_kb "${PID[$b]}")
    : > "$WORK/hold-$b.out"
    first=0
    for ((i = 0; i < procs; i++)); do
      total=$(( HOLD - first < per ? HOLD - first : per ))
      nice -n "$NICE" "$LOADGEN" hold --port "${PORT[$b]}" --count "$total" --first "$first" --concurrency 16 --label "$b" \
        --scenario hold-part --max-wait 300 >>"$WORK/hold-$b.out" 2>>"$WORK/hold-$b.err" &
      PID[hold$i]=$!
      first=$(( first + total ))
      sleep 0.3
    done
    wait_for 240 bash -c "[[ \$(grep -c READY '$WORK/hold-$b.err') -ge $procs ]]" || log "hold $b: not every process got ready"
    sleep 3
    rss1=$(rss_kb "${PID[$b]}")
    children_rss=$(children_rss_kb "${PID[$b]}")
    up=$(grep -o '"alive":[0-9]*' "$WORK/hold-$b.out" | awk -F: '{s += $2} END {print s+0}')
    for ((i = 0; i < procs; i++)); do kill -USR1 "${PID[hold$i]}" 2>/dev/null || true; done
    for ((i = 0; i < procs; i++)); do
      wait_for 60 bash -c "! kill -0 ${PID[hold$i]} 2>/dev/null" || stop_pid "${PID[hold$i]}"
      wait "${PID[hold$i]}" 2>/dev/null || true
      unset "PID[hold$i]"
    done
    record < "$WORK/hold-$b.out"
    printf '{"mode":"hold-summary","label":"%s","scenario":"hold","sessions":%s,"rss_before_kb":%s,"rss_after_kb":%s,"children_rss_kb":%s}\n' \
      "$b" "$up" "$rss0" "$rss1" "$children_rss" | record
    log "hold $b: $up sessions, RSS $rss0 -> $rss1 kB"
    [[ $b == iotgate ]] && quiesce
    sleep 1.5
  done
}

# Redis stalled: SIGSTOP redis-server for STALL_FOR s during a QoS 0 publish run on iotgate; meanwhile log in
# STALL_LOGINS known devices (not among the publishers).
# First a control: the same run with a process that does nothing stopped instead, to show what the three
# segments' rates do on their own (they drift down within a run, on plain mosquitto as well).
scenario_stall() {
  local stall=(--duration "$STALL_SECS" --stall-at "$STALL_AT" --stall-for "$STALL_FOR" --stall-logins "$STALL_LOGINS"
    --stall-first $((DEVICES - STALL_LOGINS)))
  sleep 3600 &
  PID[idle]=$!
  publish_run iotgate 0 stall-control 0 "${stall[@]}" --stall-pid "${PID[idle]}"
  stop_pid "${PID[idle]}"
  unset 'PID[idle]'
  publish_run iotgate 0 stall 0 "${stall[@]}" --stall-pid "${PID[redis]}"
  kill -CONT "${PID[redis]}" 2>/dev/null || true
  quiesce
}

# OTA: Lierda V2 firmware reports (HeaderCtrl 8). iotgate answers each with a firmware_report_ack and notifies
# (ota_notify) every device that reports the from-version of a running automatic task, once per session; on plain
# mosquitto the load generator's echo client (ota --echo) does the same. A fixed-rate part measures the report ->
# ack and report -> notify latencies, a saturated part the reports acked per second. Both brokers are restarted
# with set_tcp_nodelay true first: with Nagle on, the broker's answer, written right after its PUBACK, waits for
# the device's delayed ACK (40 ms), which would be all the latency shows, on either broker.
OTA_FROM=1.0
OTA_TARGET=2.0
OTA_URL=http://example.com/bench/fw-2.0.bin
OTA_MD5=5f2b51ca2fdc5baa31ec02e002f69aec
OTA_SIZE=1024
OTA_NAME=bench-ota
OTA_ARGS=(--from-version "$OTA_FROM" --target-version "$OTA_TARGET" --target-url "$OTA_URL" --target-md5 "$OTA_MD5"
  --target-size "$OTA_SIZE" --task-name "$OTA_NAME")
OTA_FAILED=""          # why the OTA scenario failed, if it did
iotgate_cli() { IOTGATE_REDIS="redis://127.0.0.1:$REDIS_PORT/0" IOTGATE_PREFIX="$PREFIX" timeout 60 "$root/scripts/iotgate" "$@"; }

ota_run() {  # ota_run BROKER: one measurement; on failure sets OTA_FAILED and returns 1
  local b=$1 attempt line rc
  local echo=()
  [[ $b == plain ]] && echo=(--echo)
  for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
    rc=0
    lg ota --port "${PORT[$b]}" --count "$OTA_DEVICES" --first 0 --rate "$OTA_RATE" --warmup 1 --duration "$OTA_SECS" \
      --sat-duration "$OTA_SECS" --label "$b" --scenario ota --cpu "$(cpu_of "$b")" "${OTA_ARGS[@]}" "${echo[@]}" || rc=$?
    line=$LINE
    [[ $b == iotgate ]] && quiesce
    sleep 1.5   # type-1 timestamps must be later than the devices' last disconnect
    if (( rc != 0 )); then
      record_line "$line" failed
      OTA_FAILED="the $b run failed (exit status $rc): see its FAILED line above"
      return 1
    fi
    if (( attempt < ATTEMPTS )) && noisy "$line" measured_seconds; then
      record_line "$line" noisy
      log "other processes were busy during that run; repeating it"
      continue
    fi
    record_line "$line"
    return 0
  done
}

scenario_ota() {
  local out id i rep
  BROKER_TCP_NODELAY=1
  restart_broker plain
  restart_broker iotgate
  out="$(iotgate_cli task create --product-id BE5C0D01 --name "$OTA_NAME" --type wifi --from-version "$OTA_FROM" \
    --target-version "$OTA_TARGET" --target-url "$OTA_URL" --target-md5 "$OTA_MD5" --target-size "$OTA_SIZE" \
    --ack-timeout 3600)" || die "cannot create the OTA task"
  id="$(grep -o '"id":"[^"]*"' <<<"$out" | head -1 | cut -d'"' -f4)"
  [[ -n $id ]] || die "task create printed no id: $out"
  # A production task runs once reviewed: submitted by one operator, approved by the reviewer it names.
  iotgate_cli --operator bench-admin task submit "$id" --reviewer bench-reviewer >/dev/null || die "cannot submit OTA task $id"
  iotgate_cli --operator bench-reviewer task review "$id" --approve >/dev/null || die "cannot approve OTA task $id"
  iotgate_cli task get "$id" | grep -q '"status":"1"' || die "OTA task $id is not running after its review"
  # The plugin learns of the task from Redis' changes stream: wait (at most ~45 s) until a device outside the
  # measured ones gets its notify.
  for ((i = 0; i < 15; i++)); do
    sleep 1.2
    if lg ota --port "${PORT[iotgate]}" --count 1 --first $((DEVICES - 1)) --rate 4 --warmup 0 --duration 0.3 \
      --sat-duration 0 --drain 1 --label probe --scenario ota "${OTA_ARGS[@]}" 2>>"$WORK/ota-probe.log"; then
      break
    fi
  done
  if (( i == 15 )); then
    record_line "$LINE" failed
    OTA_FAILED="iotgate sent no ota_notify for running task $id in $i tries ($(grep FAILED "$WORK/ota-probe.log" | tail -1))"
  else
    log "OTA task $id running; iotgate notifies"
    for ((rep = 0; rep < OTA_REPS; rep++)); do
      if (( rep % 2 == 0 )); then
        ota_run plain && ota_run iotgate || break
      else
        ota_run iotgate && ota_run plain || break
      fi
    done
  fi
  iotgate_cli task delete "$id" >/dev/null || log "could not delete OTA task $id"
  [[ -z $OTA_FAILED ]] || log "ERROR: OTA scenario: $OTA_FAILED"
}

# Busy CPU of the whole machine, in clock ticks (all CPUs).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# Waits (at most QUIET_WAIT s) until processes other than ours use less than NOISE_LIMIT % of one CPU over 5 s;
# our brokers and redis are idle meanwhile.
wait_quiet() {
  local waited=0 a b pct
  (( QUIET_WAIT > 0 )) || return 0
  while true; do
    a=$(busy_ticks); sleep 5; b=$(busy_ticks)
    pct=$(( (b - a) * 100 / ($(getconf CLK_TCK) * 5) ))
    (( pct < NOISE_LIMIT )) && { log "machine quiet enough (${pct}% of a CPU busy)"; return 0; }
    (( waited == 0 )) && log "other processes use ${pct}% of a CPU; waiting up to $QUIET_WAIT s for them to calm down"
    waited=$(( waited + 5 ))
    (( waited < QUIET_WAIT )) || { log "still ${pct}% busy after $QUIET_WAIT s; measuring anyway"; return 0; }
  done
}

wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }
wait_quiet
started=$(date +%s)
if wants connect; then
  log "connect storms: $CONNECT_REPS x $PASS logins per pass and broker"
  scenario_connect
fi
if wants nowrites; then
  log "diagnostic: warm passes on iotgate with redis-server stopped (no login/logout writes sent)"
  scenario_connect_nowrites
fi
if wants publish; then
  log "publish throughput: $PUB_DEVICES devices, $PUB_SECS s, QoS 0 and 1"
  # With three controls: mosquitto with a plugin that registers the same callbacks and does nothing
  # (bench/noop_plugin.cpp), and the same plugin with an idle thread that shares the broker's descriptor table, or
  # that has one of its own (as iotgate's threads had before its store process).
  PUB_BROKERS="plain iotgate noop noopthread noopown" scenario_publish publish-qos0 0 "$PUB_REPS" --duration "$PUB_SECS"
  scenario_publish publish-qos1 1 "$PUB_REPS" --duration "$PUB_SECS"
fi
if wants lierda; then
  log "publish with Lierda uplink frames (iotgate answers each with an uplink_ack)"
  scenario_publish publish-lierda 0 "$LIERDA_REPS" --duration "$PUB_SECS" --payload-kind lierda
fi
if wants hold; then
  log "idle sessions: $HOLD"
  scenario_hold
fi
if wants stall; then
  log "redis stalled for $STALL_FOR s"
  scenario_stall
fi
if wants ota; then
  log "OTA: $OTA_DEVICES devices, firmware reports at $OTA_RATE/s for $OTA_SECS s, then saturated for $OTA_SECS s"
  scenario_ota   # last: it restarts the brokers with set_tcp_nodelay true
fi
if wants micro; then
  log "the core's two calls per delivered message in a warm loop (iotgate_gate_micro)"
  nice -n "$NICE" "$BUILD/iotgate_gate_micro" | record || die "iotgate_gate_micro failed"
fi

"$LOADGEN" report --results "$RESULTS" > "${RESULTS%.jsonl}.md"
echo
cat "${RESULTS%.jsonl}.md"
echo
log "done in $(( $(date +%s) - started )) s; raw results: $RESULTS, table: ${RESULTS%.jsonl}.md"
[[ -z $OTA_FAILED ]] || die "OTA scenario failed: $OTA_FAILED"
