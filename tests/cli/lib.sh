# Shared by the CLI tests: a private redis-server on a free port, counted assertions, running the CLI.
# The sourcing test sets TEST_NAME and REQUIRED_TOOLS (besides redis-server and redis-cli) first.
# shellcheck shell=bash

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd -- "$HERE/../.." && pwd)
CLI=$ROOT/scripts/iotgate
LUA=$ROOT/scripts/lua

for tool in redis-server redis-cli "${REQUIRED_TOOLS[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$TEST_NAME: $tool not found" >&2; echo "0 passed, 1 failed"; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/iotgate-$TEST_NAME.XXXXXXXX")
REDIS_PID=
cleanup() {
  if [[ -n $REDIS_PID ]]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  rm -rf -- "$TMP"
}
trap cleanup EXIT

# ------------------------------------------------------------------------------------ redis-server
PORT=
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
    --daemonize no --enable-debug-command local >"$TMP/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 50); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    if [[ $(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null) == PONG ]]; then
      # make sure the server answering is ours (and not another one on that port)
      if redis-cli -h 127.0.0.1 -p "$port" INFO server 2>/dev/null | tr -d '\r' |
        grep -qx "process_id:$REDIS_PID"; then
        PORT=$port
      fi
      break
    fi
    sleep 0.1
  done
  [[ -n $PORT ]] && break
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
done
if [[ -z $PORT ]]; then
  echo "$TEST_NAME: could not start redis-server" >&2
  echo "0 passed, 1 failed"
  exit 1
fi


URI=redis://127.0.0.1:$PORT/0
DEAD_URI=redis://127.0.0.1:1/0
export IOTGATE_REDIS=$URI
P=iotgate:

# ------------------------------------------------------------------------------------ assertions
PASS=0
FAIL=0
CTX=

pass() { PASS=$((PASS + 1)); }
fail() {
  FAIL=$((FAIL + 1))
  printf 'FAIL [%s] %s\n' "$CTX" "$1" >&2
}
eq() { # DESC EXPECTED ACTUAL
  if [[ $3 == "$2" ]]; then pass; else fail "$1: expected '$2', got '$3'"; fi
}
ne() { # DESC UNEXPECTED ACTUAL
  if [[ $3 != "$2" ]]; then pass; else fail "$1: got '$3'"; fi
}
has() { # DESC HAYSTACK NEEDLE
  if [[ $2 == *"$3"* ]]; then pass; else fail "$1: '$3' not in '${2:0:300}'"; fi
}
hasnt() { # DESC HAYSTACK NEEDLE
  if [[ $2 != *"$3"* ]]; then pass; else fail "$1: '$3' unexpectedly in '${2:0:300}'"; fi
}
like() { # DESC REGEX VALUE
  if [[ $3 =~ $2 ]]; then pass; else fail "$1: '$3' does not match /$2/"; fi
}

# run ARGS...: the CLI with ARGS; sets OUT, ERR, RC
run() {
  RC=0
  OUT=$("$CLI" "$@" 2>"$TMP/stderr") || RC=$?
  ERR=$(cat -- "$TMP/stderr")
}

lines() { if [[ -z $1 ]]; then echo 0; else printf '%s\n' "$1" | wc -l | tr -d ' '; fi; }

# the length of the changes stream (rcli is the test's own redis-cli wrapper)
xlen() { rcli XLEN "${P}changes"; }

# a digest of the whole dataset (every database)
digest() { redis-cli -u "$URI" --raw DEBUG DIGEST; }

# ok DESC ARGS...: the command succeeds with one line of JSON on stdout and nothing on stderr
ok() {
  local desc=$1
  shift
  run "$@"
  CTX=$desc
  eq "exit status" 0 "$RC"
  eq "stderr" "" "$ERR"
  eq "one line of stdout" 1 "$(lines "$OUT")"
  like "JSON on stdout" '^(\{.*\}|\[.*\])$' "$OUT"
}

# help ARGS...: usage on stdout, exit 0, nothing on stderr (Redis is not needed for it)
helps() {
  IOTGATE_REDIS=$DEAD_URI run "$@"
  CTX="help: $*"
  eq "exit status" 0 "$RC"
  eq "stderr" "" "$ERR"
  has "usage text" "$OUT" "Usage: iotgate"
}

# lua SCRIPT ARGS...: EVAL a script directly (bypassing the bash validation); sets OUT
lua() {
  local name=$1
  shift
  OUT=$(redis-cli -u "$URI" --raw EVAL "$(cat "$LUA/lib.lua")"$'\n'"$(cat "$LUA/$name.lua")" 0 "$P" "$@" 2>&1)
}
