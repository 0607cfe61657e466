#!/usr/bin/env bash
# tests/package: the Debian package as an operator uses it. Builds it with scripts/package, installs it on THIS
# machine with dpkg -i, checks where its files are, runs mosquitto with Debian's own /etc/mosquitto/mosquitto.conf
# (a temporary copy whose include_dir holds the drop-in enabled and a listener, pid file, data and log in a
# temporary directory: the system service is never touched) against a private redis-server, logs a Lierda device
# in with the installed CLI's values (and is refused with a wrong password), then removes (dpkg -r, with the real
# drop-in enabled as an operator would have it) and purges (dpkg -P) the package and checks that mosquitto still
# starts with Debian's configuration.
#
# Needs root (dpkg -i); as another user it prints why and passes as skipped. It refuses to run (fails) when a
# package named iotgate is already installed, since it would replace and then purge it.
# Environment: IOTGATE_PKG_BUILD_DIR (scripts/package's build directory, default build-pkg/ in the checkout).
# Ends with "N passed, M failed"; exits 1 when anything failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit
}

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: the package test installs iotgate with dpkg -i and needs root (CI runs it as root)"
  echo "0 passed, 0 failed (skipped: not root)"
  exit 0
fi
if dpkg-query -W -f='${Status}' iotgate 2>/dev/null | grep -qv "not-installed"; then
  bad "a package iotgate is already on this machine ($(dpkg-query -W -f='${Version} ${Status}' iotgate)): the test" \
    "would replace and purge it; remove it first (dpkg -P iotgate)"
  finish
fi
for tool in mosquitto redis-server redis-cli mosquitto_pub dpkg-deb dpkg-architecture; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin"
  command -v "$tool" >/dev/null || { bad "$tool is missing (run scripts/install-deps)"; finish; }
done

tmp=$(mktemp -d /tmp/iotgate-package-test.XXXXXX)
chmod 0755 "$tmp"
installed=0
pids=()
dropin=/etc/mosquitto/conf.d/iotgate.conf
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  if [[ $installed = 1 ]]; then
    dpkg -P iotgate >/dev/null 2>&1 </dev/null || echo "cleanup: dpkg -P iotgate failed" >&2
    rm -f -- "$dropin.dpkg-removed"
  fi
  rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port nobody listens on (bash's /dev/tcp connect fails), from a range the kernel does not hand out.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
# waits until something accepts on 127.0.0.1:$1 (up to 10 s) while process $2 lives
wait_port() {
  local _
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# stop PID: SIGTERM, then wait for it
stop() {
  kill "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}

# Debian's mosquitto.conf, copied with its pid file, data and log moved under $1 (owned by user mosquitto, the
# broker drops to it), include_dir set to $2, and the extra lines in $3 appended.
broker_conf() {
  local dir=$1 include=$2 extra=$3 conf=$1/mosquitto.conf
  mkdir -p "$dir/data"
  chown -R mosquitto: "$dir" 2>/dev/null || chmod -R a+rwX "$dir"
  sed -E -e "s|^pid_file .*|pid_file $dir/mosquitto.pid|" \
    -e "s|^persistence_location .*|persistence_location $dir/data/|" \
    -e "s|^log_dest file .*|log_dest file $dir/mosquitto.log|" \
    -e "s|^include_dir .*|include_dir $include|" /etc/mosquitto/mosquitto.conf >"$conf"
  grep -q "^include_dir $include\$" "$conf" || echo "include_dir $include" >>"$conf"
  [[ -n $extra ]] && printf '%s\n' "$extra" >>"$conf"
  echo "$conf"
}

version=$(sed -nE 's/^project\(iotgate VERSION ([^ )]+).*/\1/p' "$root/CMakeLists.txt")
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)

# ---------------------------------------------------------------------------------------------- build
echo "== scripts/package"
deb=$("$root/scripts/package" "$tmp/out" 2>"$tmp/package.log" | tail -n 1)
if [[ $deb != "$tmp/out/iotgate_${version}_${arch}.deb" || ! -f $deb ]]; then
  bad "scripts/package builds $tmp/out/iotgate_${version}_${arch}.deb (got '$deb')"
  tail -n 30 "$tmp/package.log"
  finish
fi
ok "scripts/package builds $(basename "$deb")"
with_api=0
grep -q '/usr/bin/iotgate-api$' <<<"$(dpkg-deb -c "$deb")" && with_api=1
fields=$(dpkg-deb -f "$deb" Depends Recommends)
for dep in 'mosquitto' 'redis-tools' 'libc6' 'libstdc\+\+6' 'libssl3' 'libhiredis0\.14'; do
  check "Depends: $dep" grep -qE "^Depends:.*(^|[ ,])$dep( |,|$)" <<<"$fields"
done
check "Recommends: redis-server" grep -qE "^Recommends:.*redis-server" <<<"$fields"

# ---------------------------------------------------------------------------------------------- install
echo "== dpkg -i"
installed=1
if dpkg -i "$deb" >"$tmp/dpkg-i.log" 2>&1 </dev/null; then
  ok "dpkg -i $(basename "$deb")"
else
  bad "dpkg -i $(basename "$deb")"
  cat "$tmp/dpkg-i.log"
  finish
fi
check "dpkg reports iotgate $version installed" \
  test "$(dpkg-query -W -f='${Version} ${Status}' iotgate)" = "$version install ok installed"
plugin=/usr/lib/$multiarch/iotgate/iotgate.so
check "plugin at $plugin" test -f "$plugin"
check "plugin is stripped of debug info" bash -c "! readelf -S '$plugin' | grep -q '\.debug_info'"
check "drop-in $dropin" test -f "$dropin"
check "drop-in is a conffile" grep -q "$dropin" <(dpkg-query -W -f='${Conffiles}' iotgate)
check "drop-in enables nothing until edited" bash -c "! grep -vE '^[[:space:]]*(#|$)' '$dropin'"
check "drop-in names the plugin's path" grep -qx "#plugin $plugin" "$dropin"
check "CLI /usr/bin/iotgate" test -x /usr/bin/iotgate
check "CLI's Lua under /usr/share/iotgate/lua" test -f /usr/share/iotgate/lua/lib.lua
check "iotgate --help runs from another directory" bash -c "cd / && /usr/bin/iotgate --help | grep -q 'Usage: iotgate'"
for f in README.md security.md redis-schema.md architecture.md copyright examples/iotgate.conf examples/mosquitto.conf; do
  check "doc /usr/share/doc/iotgate/$f" test -f "/usr/share/doc/iotgate/$f"
done
if [[ -f $root/api/main.cpp ]]; then
  check "the package has iotgate-api (api/ is in this checkout)" test "$with_api" = 1
fi
if [[ $with_api = 1 ]]; then
  check "/usr/bin/iotgate-api --help" bash -c "cd / && /usr/bin/iotgate-api --help | grep -q 'Usage: iotgate-api'"
  check "console under /usr/share/iotgate/web" test -f /usr/share/iotgate/web/index.html
fi
check "no file of the package is missing or altered (dpkg --verify)" bash -c "[ -z \"\$(dpkg --verify iotgate)\" ]"

# ---------------------------------------------------------------------------------------------- run
echo "== mosquitto with Debian's mosquitto.conf and the drop-in enabled"
redis_port=$(free_port)
mkdir -p "$tmp/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --save "" --appendonly no \
  >"$tmp/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
check "private redis-server on 127.0.0.1:$redis_port" wait_port "$redis_port" "$redis_pid"
export IOTGATE_REDIS="redis://127.0.0.1:$redis_port/0"

# The operator's edit, in a copy: the plugin line and the Redis options (pointed at the private Redis) and the
# recommended settings uncommented; the password stays commented.
mqtt_port=$(free_port)
mkdir -p "$tmp/conf.d"
sed -E -e "s|^#(plugin /.*)|\1|" \
  -e "s|^#plugin_opt_redis_port .*|plugin_opt_redis_port $redis_port|" \
  -e "s/^#((plugin_opt_(redis_host|redis_db|key_prefix)|per_listener_settings|allow_anonymous|set_tcp_nodelay|check_retain_source|queue_qos0_messages) .*)/\1/" \
  "$dropin" >"$tmp/conf.d/iotgate.conf"
echo "listener $mqtt_port 127.0.0.1" >"$tmp/conf.d/listener.conf"
conf=$(broker_conf "$tmp/broker" "$tmp/conf.d" "")
mosquitto -c "$conf" >"$tmp/broker.out" 2>&1 &
mosq_pid=$!
pids+=("$mosq_pid")
if wait_port "$mqtt_port" "$mosq_pid"; then
  ok "mosquitto starts with the plugin on 127.0.0.1:$mqtt_port"
else
  bad "mosquitto starts with the plugin on 127.0.0.1:$mqtt_port"
  cat "$tmp/broker.out" "$tmp/broker/mosquitto.log" 2>/dev/null
fi
check "the broker runs as user mosquitto" test "$(ps -o user= -p "$mosq_pid" | tr -d ' ')" = mosquitto
store_pid=
store_ok() {
  local _
  for _ in $(seq 50); do
    store_pid=$(pgrep -u mosquitto -x iotgate-store -P "$mosq_pid")
    [[ -n $store_pid ]] && return 0
    sleep 0.1
  done
  return 1
}
check "the plugin forked its store process iotgate-store as user mosquitto" store_ok

cli=/usr/bin/iotgate
if (cd / && $cli product add lierda --openid 7ED01E2A --product-id AA30C505 \
      --product-key DB6FACEF35BEBA0517712F0E4BE32936 --auth-type 1 &&
    $cli device add lierda --product-id AA30C505 --node-eui 20MQTTJ000121 \
      --secret 326086233FAB8A96566796551EB1DFF8) >"$tmp/cli.log" 2>&1; then
  ok "installed CLI creates a Lierda product and device"
else
  bad "installed CLI creates a Lierda product and device"
  cat "$tmp/cli.log"
fi
creds=$(cd / && $cli creds lierda --product-id AA30C505 --node-eui 20MQTTJ000121 --type 0 2>&1)
field() { sed -nE "s/.*\"$1\":\"([^\"]*)\".*/\1/p" <<<"$creds"; }
client_id=$(field client_id)
username=$(field username)
password=$(field password)
check "iotgate creds lierda prints client id, username and password" test -n "$client_id" -a -n "$username" -a -n "$password"
topic=/sys/7ED01E2A/AA30C505/20MQTTJ000121/uplink
message='{"MessageId":1,"HeaderCtrl":4,"Payload":{"power":99},"Version":"2.0"}'
login() { # login PASSWORD: one publish at QoS 1 (so a refused login fails the command)
  timeout 10 mosquitto_pub -p "$mqtt_port" -i "$client_id" -u "$username" -P "$1" -q 1 -t "$topic" -m "$message" \
    >>"$tmp/pub.log" 2>&1
}
# The plugin loads the new device within about a second of the CLI's change.
logged_in=0
for _ in $(seq 30); do
  if login "$password"; then logged_in=1; break; fi
  sleep 0.5
done
check "the device logs in with the creds' values and publishes" test "$logged_in" = 1

# The installed HTTP API: its console, and the products it reads with the installed Lua, for a token of the
# installed CLI.
api_works() {
  local port pid token rc=0
  port=$(free_port)
  (cd / && exec /usr/bin/iotgate-api --listen "127.0.0.1:$port") >"$tmp/api.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  token=$(cd / && $cli token add --member package-test | sed -nE 's/.*"token":"([^"]*)".*/\1/p')
  wait_port "$port" "$pid" && python3 - "$port" "$token" <<'PY' || rc=1
import sys, urllib.request
base = "http://127.0.0.1:%s" % sys.argv[1]
page = urllib.request.urlopen(base + "/", timeout=10).read().decode()
assert "<html" in page.lower(), page[:200]
req = urllib.request.Request(base + "/v2/products?offset=0&limit=50", headers={"Access-Token": sys.argv[2]})
body = urllib.request.urlopen(req, timeout=10).read().decode()
assert "AA30C505" in body, body[:300]
PY
  stop "$pid"
  [[ $rc = 0 ]] || cat "$tmp/api.log"
  return $rc
}
if [[ $with_api = 1 ]]; then
  check "iotgate-api serves the installed console and lists the product for a token of the installed CLI" api_works
fi
check "a wrong password is refused" bash -c "! timeout 10 mosquitto_pub -p '$mqtt_port' -i '$client_id' -u '$username' \
  -P 0000000000000000000000000000000000000000000000000000000000000000 -q 1 -t '$topic' -m x >>'$tmp/pub.log' 2>&1"
check "the refusal is logged by the plugin" grep -q "iotgate: login refused: .*wrong V2 password" "$tmp/broker/mosquitto.log"
stop "$mosq_pid"
store_gone() {
  local _
  [[ -n $store_pid ]] || return 1
  for _ in $(seq 50); do
    kill -0 "$store_pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}
check "the store process exits with the broker" store_gone
[[ $failed -eq 0 ]] || { cat "$tmp/pub.log" "$tmp/broker/mosquitto.log" 2>/dev/null | tail -n 40; }

# ---------------------------------------------------------------------------------------------- remove
echo "== dpkg -r with the drop-in enabled, dpkg -P"
# As an operator would: the real drop-in enabled (Redis at the private one), then the package removed.
sed -i -E -e "s|^#(plugin /.*)|\1|" -e "s|^#plugin_opt_redis_port .*|plugin_opt_redis_port $redis_port|" "$dropin"
# mosquitto with Debian's configuration as it is (include_dir /etc/mosquitto/conf.d), a listener on a free port
debian_broker() { # debian_broker NAME: starts it, 0 if it accepts connections and still runs a second later
  local port pid conf
  port=$(free_port)
  conf=$(broker_conf "$tmp/$1" /etc/mosquitto/conf.d "listener $port 127.0.0.1")
  mosquitto -c "$conf" >"$tmp/$1.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  if wait_port "$port" "$pid" && sleep 1 && kill -0 "$pid" 2>/dev/null; then
    stop "$pid"
    return 0
  fi
  stop "$pid"
  cat "$tmp/$1.out" "$tmp/$1/mosquitto.log" 2>/dev/null
  return 1
}
enabled_loads() { debian_broker enabled && grep -q "iotgate: started" "$tmp/enabled/mosquitto.log"; }
check "with the real drop-in enabled, Debian's configuration loads the plugin" enabled_loads
if dpkg -r iotgate >"$tmp/dpkg-r.log" 2>&1 </dev/null; then ok "dpkg -r iotgate"; else bad "dpkg -r iotgate"; cat "$tmp/dpkg-r.log"; fi
check "dpkg reports iotgate's config files only" test "$(dpkg-query -W -f='${Status}' iotgate)" = "deinstall ok config-files"
for f in "$plugin" /usr/bin/iotgate /usr/bin/iotgate-api /usr/share/iotgate /usr/libexec/iotgate /usr/share/doc/iotgate; do
  check "removed: $f" test ! -e "$f"
done
check "the enabled drop-in is out of include_dir's reach ($dropin.dpkg-removed)" \
  test ! -e "$dropin" -a -f "$dropin.dpkg-removed"
check "after dpkg -r mosquitto starts with Debian's configuration" debian_broker removed
check "and without the plugin" bash -c "! grep -q 'Loading plugin' '$tmp/removed/mosquitto.log'"

if dpkg -i "$deb" >"$tmp/dpkg-i2.log" 2>&1 </dev/null; then ok "dpkg -i again"; else bad "dpkg -i again"; cat "$tmp/dpkg-i2.log"; fi
check "reinstalling restores the operator's enabled drop-in" grep -qx "plugin $plugin" "$dropin"
if dpkg -P iotgate >"$tmp/dpkg-P.log" 2>&1 </dev/null; then ok "dpkg -P iotgate"; else bad "dpkg -P iotgate"; cat "$tmp/dpkg-P.log"; fi
installed=0
check "dpkg knows no iotgate after purge" bash -c "! dpkg-query -W -f='\${Status}' iotgate 2>/dev/null | grep -q installed"
check "purged: $dropin" test ! -e "$dropin" -a ! -e "$dropin.dpkg-removed"
check "purged: $plugin, /usr/bin/iotgate, /usr/share/iotgate" test ! -e "$plugin" -a ! -e /usr/bin/iotgate -a ! -e /usr/share/iotgate
check "after dpkg -P mosquitto starts with Debian's configuration" debian_broker purged

finish
