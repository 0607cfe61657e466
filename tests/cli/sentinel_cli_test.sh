#!/usr/bin/env bash
# Test of the admin CLI's sentinel:// URI (docs/deployment.md, "Redis Sentinel"): the private redis-server of lib.sh
# is the primary, with a replica and three sentinels (quorum 2), plus a stale sentinel that names a replica. The CLI
# asks the sentinels in turn, checks the answer with ROLE, and after a failover (the primary killed) finds the new one.
# Run: bash tests/cli/sentinel_cli_test.sh   (CTest runs it as the "sentinel_cli" test)
# Prints failures on stderr and ends with one line "N passed, M failed"; exits 1 if M > 0.
set -euo pipefail
export LC_ALL=C

TEST_NAME=sentinel_cli_test
REQUIRED_TOOLS=(timeout)
# shellcheck source=tests/cli/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
unset IOTGATE_PREFIX IOTGATE_LUA_DIR
NAME=iotgate-main

PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  cleanup
}
trap stop_all EXIT

# start VAR DIR ARGS...: redis-server ARGS (plus --port) on a free port, in DIR; sets VAR to the port. Dies when it
# cannot start one.
start() {
  local var=$1 dir=$2 port pid
  shift 2
  mkdir -p "$dir"
  for _ in $(seq 1 20); do
    port=$((20000 + RANDOM % 40000))
    if [[ $1 == --sentinel ]]; then
      { printf 'port %s\nbind 127.0.0.1\ndir %s\n' "$port" "$dir"; cat "$dir/extra.conf"; } >"$dir/sentinel.conf"
      redis-server "$dir/sentinel.conf" --sentinel >"$dir/log" 2>&1 &
    else
      redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" "$@" >"$dir/log" 2>&1 &
    fi
    pid=$!
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      if redis-cli -p "$port" INFO server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
        PIDS+=("$pid")
        printf -v "$var" '%s' "$port"
        return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "$TEST_NAME: could not start redis-server $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

# sentinel VAR MASTERPORT: a sentinel monitoring the master on MASTERPORT as $NAME
sentinel() {
  local dir=$TMP/sentinel-$1
  mkdir -p "$dir"
  printf 'sentinel monitor %s 127.0.0.1 %s 2\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 4000\n' \
    "$NAME" "$2" "$NAME" "$NAME" >"$dir/extra.conf"
  start "$1" "$dir" --sentinel
}

# until SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds; false after SECONDS
until_ok() {
  local n=$(($1 * 10))
  shift
  while ((n-- > 0)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}
names() { [[ $(redis-cli -p "$1" --raw SENTINEL get-master-addr-by-name "$NAME" 2>/dev/null | tail -n 1) == "$2" ]]; }
ready() { # SENTINELPORT: knows the replica and the two other sentinels
  local info
  info=$(redis-cli -p "$1" --raw SENTINEL master "$NAME" 2>/dev/null | tr '\n' ' ')
  [[ $info == *"num-slaves 1 "* && $info == *"num-other-sentinels 2 "* ]]
}
synced() { redis-cli -p "$1" INFO replication 2>/dev/null | tr -d '\r' | grep -qx 'master_link_status:up'; }

PRIMARY=$PORT
start REPLICA "$TMP/replica" --replicaof 127.0.0.1 "$PRIMARY"
CTX=setup
until_ok 30 synced "$REPLICA" || fail "the replica did not sync"
# a replica of nobody: what a sentinel that has not seen a failover names (a demoted primary, or an old one that came back)
start LONER "$TMP/loner" --replicaof 127.0.0.1 1
sentinel S1 "$PRIMARY"
sentinel S2 "$PRIMARY"
sentinel S3 "$PRIMARY"
sentinel STALE "$LONER" # on its own: it names the loner, which is no primary
for s in "$S1" "$S2" "$S3"; do until_ok 60 ready "$s" || fail "sentinel $s did not see the set"; done

SET=127.0.0.1:$S1,127.0.0.1:$S2,127.0.0.1:$S3
SURI=sentinel://$SET/$NAME
at() { redis-cli -p "$1" --raw "${@:2}"; }

# ------------------------------------------------------------------------------------ resolving
ok "--redis sentinel://" --redis "$SURI/0" product add lierda --openid 5E000001 --product-id 5E000002 --auth-type 1
eq "stored on the primary" lierda "$(at "$PRIMARY" HGET "${P}product:5E000002" protocol)"
IOTGATE_REDIS=$SURI ok "\$IOTGATE_REDIS=sentinel:// (no /DB: 0)" product show 5E000002
has "the product" "$OUT" '"id":"5E000002"'
ok "a sentinel that is down is passed over" --redis "sentinel://127.0.0.1:1,127.0.0.1:$S2/$NAME" product show 5E000002
ok "a sentinel that names a replica is passed over (ROLE)" --redis "sentinel://127.0.0.1:$STALE,127.0.0.1:$S3/$NAME/0" \
  device add lierda --product-id 5E000002 --node-eui STALEFIRST
eq "the device is on the primary" 1 "$(at "$PRIMARY" SISMEMBER "${P}devices:5E000002" STALEFIRST)"
ok "sentinel:// with a database" --redis "$SURI/3" product add lierda --openid 5E000003 --product-id 5E000004 --auth-type 1
eq "stored in database 3" lierda "$(at "$PRIMARY" -n 3 HGET "${P}product:5E000004" protocol)"
eq "not in database 0" "" "$(at "$PRIMARY" HGET "${P}product:5E000004" protocol)"

run --redis "sentinel://127.0.0.1:$STALE/$NAME" product show 5E000002
CTX="only a stale sentinel"
eq "exit status" 1 "$RC"
has "says why" "$ERR" "iotgate: redis: no sentinel led to a primary for master $NAME (sentinel 127.0.0.1:$STALE: primary 127.0.0.1:$LONER: not a primary (ROLE: slave))"
eq "nothing stored on the loner" 0 "$(at "$LONER" DBSIZE)"

run --redis "sentinel://127.0.0.1:1,127.0.0.1:$S1/nosuchmaster" product show 5E000002
CTX="unknown master"
eq "exit status" 1 "$RC"
has "each sentinel" "$ERR" "(sentinel 127.0.0.1:1: no answer; sentinel 127.0.0.1:$S1: knows no master named nosuchmaster)"

for uri in "sentinel://$SET" "sentinel://$SET/" "sentinel:///$NAME" "sentinel://127.0.0.1:$S1,,127.0.0.1:$S2/$NAME" \
  "sentinel://127.0.0.1:99999/$NAME" "sentinel://a%b:1/$NAME" "sentinel://$SET/$NAME/x" "sentinel://$SET/a,b"; do
  run --redis "$uri" product show 5E000002
  CTX="bad URI $uri"
  eq "exit status" 2 "$RC"
  has "names the problem" "$ERR" "iotgate: "
done
helps --redis "sentinel://127.0.0.1:1/$NAME" --help # no Redis needed for help, and nothing resolved
CTX=usage
has "the usage names sentinel://" "$OUT" "sentinel://[[USER]:PASSWORD@]HOST[:PORT]"

# ------------------------------------------------------------------------------------ failover
kill -9 "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=
CTX=failover
until_ok 60 names "$S1" "$REPLICA" && until_ok 10 names "$S2" "$REPLICA" && until_ok 10 names "$S3" "$REPLICA" ||
  fail "the sentinels did not promote the replica"
until_ok 10 test "$(at "$REPLICA" ROLE | head -n 1)" = master || fail "the replica is no primary"
ok "after the failover, the new primary" --redis "$SURI" device add lierda --product-id 5E000002 --node-eui AFTERFAILOVER
eq "stored on the new primary" 1 "$(at "$REPLICA" SISMEMBER "${P}devices:5E000002" AFTERFAILOVER)"
IOTGATE_REDIS=$SURI ok "data from before the failover" device show 5E000002 STALEFIRST

# ------------------------------------------------------------------------------------ password
at "$REPLICA" CONFIG SET requirepass pw-s3cret >/dev/null
run --redis "$SURI" product show 5E000002
CTX="password needed"
eq "exit status" 1 "$RC"
has "says why" "$ERR" "not a primary (ROLE: NOAUTH Authentication required.)"
ok "sentinel://PASSWORD@" --redis "sentinel://pw-s3cret@$SET/$NAME/0" product show 5E000002
ok "sentinel://USER:PASSWORD@" --redis "sentinel://default:pw-s3cret@$SET/$NAME/0" product show 5E000002
at "$REPLICA" -a pw-s3cret --no-auth-warning CONFIG SET requirepass '' >/dev/null

# ==================================================================================== summary
echo "$PASS passed, $FAIL failed"
(( FAIL == 0 ))
