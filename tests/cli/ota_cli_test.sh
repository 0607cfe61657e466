#!/usr/bin/env bash
# Test of the OTA commands of the admin CLI (scripts/iotgate task|emu, device ask-firmware; seed 002
# and seed 000) and their Lua scripts, against a private redis-server.
# Run: bash tests/cli/ota_cli_test.sh   (from any directory; CTest runs it as the "ota_cli" test)
# Prints failures on stderr and ends with one line "N passed, M failed"; exits 1 if M > 0.
# shellcheck disable=SC2016 # many literal $ (query operators) in single quotes
set -euo pipefail
export LC_ALL=C

TEST_NAME=ota_cli_test
REQUIRED_TOOLS=(mosquitto_passwd date)
# shellcheck source=tests/cli/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

unset IOTGATE_PREFIX IOTGATE_LUA_DIR IOTGATE_OPERATOR
export USER=tester

rcli() { redis-cli -u "$URI" --raw "$@"; }

# JSON helpers (flat enough for these outputs): the FIRST string / number value of KEY in $2 (or OUT)
jstr() { { printf '%s\n' "${2-$OUT}" | grep -o "\"$1\":\"[^\"]*\"" || true; } | head -n 1 | sed "s/^\"$1\":\"//; s/\"\$//"; }
jnum() { { printf '%s\n' "${2-$OUT}" | grep -o "\"$1\":-\\{0,1\\}[0-9.]*" || true; } | head -n 1 | sed "s/^\"$1\"://"; }
# every string value of KEY, space-separated
jstrs() { { printf '%s\n' "${2-$OUT}" | grep -o "\"$1\":\"[^\"]*\"" || true; } | sed "s/^\"$1\":\"//; s/\"\$//" | tr '\n' ' ' | sed 's/ $//'; }
# every number value of KEY, space-separated
jnums() { { printf '%s\n' "${2-$OUT}" | grep -o "\"$1\":[0-9]*" || true; } | sed "s/^\"$1\"://" | tr '\n' ' ' | sed 's/ $//'; }

# change DESC TASK ARGS...: like ok, and the changes stream grew by exactly one entry "kind task id TASK"
change() {
  local desc=$1 id=$2
  shift 2
  local before after
  before=$(xlen)
  ok "$desc" "$@"
  after=$(printf 'XLEN %s\nXREVRANGE %s + - COUNT 1\n' "${P}changes" "${P}changes" | rcli | tr '\n' ' ' | sed 's/ $//')
  like "changes grew by one: kind task id $id" "^$((before + 1)) [0-9]+-[0-9]+ kind task id $id\$" "$after"
}

# refuse DESC ARGS...: exit 1 or 2, one "iotgate: " line on stderr, no stdout, Redis unchanged
refuse() {
  local desc=$1
  shift
  local before
  before=$(digest)
  run "$@"
  CTX=$desc
  like "exit status 1 or 2" '^[12]$' "$RC"
  eq "stdout" "" "$OUT"
  eq "one line of stderr" 1 "$(lines "$ERR")"
  like "stderr message" '^iotgate: .+' "$ERR"
  eq "Redis unchanged" "$before" "$(digest)"
}
# refused DESC CODE ARGS...: refuse with exactly exit CODE (1 refusal, 2 bad argument)
refused() {
  local desc=$1 code=$2
  shift 2
  refuse "$desc" "$@"
  eq "exit status $code" "$code" "$RC"
}

# the last entry of the commands stream as "field value field value ..."
last_command() { rcli XREVRANGE "${P}commands" + - COUNT 1 | tail -n +2 | tr '\n' ' ' | sed 's/ $//'; }
# the last entry's field F
last_command_field() { rcli XREVRANGE "${P}commands" + - COUNT 1 | tail -n +2 | sed -n "/^$1\$/{n;p;q}"; }

# FNV-1a 32-bit of a string (the gray-release hash)
fnv1a() {
  local s=$1 h=2166136261 i c
  for (( i = 0; i < ${#s}; i++ )); do
    printf -v c '%d' "'${s:i:1}"
    h=$(( ((h ^ c) * 16777619) & 0xffffffff ))
  done
  echo "$h"
}

# a string of N copies of S
rep() { local out='' i; for (( i = 0; i < $1; i++ )); do out+=$2; done; printf '%s' "$out"; }

TIME_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{2}Z$'
UUID_RE='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
MD5=0123456789ABCDEF0123456789abcdef
MD5L=0123456789abcdef0123456789abcdef
URL=http://fw.example.com/fw-1.1.bin
# the target of most tasks below
TGT=(--target-url "$URL" --target-md5 "$MD5" --target-size 1024)

# ==================================================================================== help
helps --help
for c in "task create" "task list" "task query" "task start" "task stop" "task delete" "task get" \
  "task show" "task versions" "task push" "task check" "task report" "task log add" "task log query" \
  "task to-production" "task submit" "task review" "task devices" "task oplog" "device ask-firmware" \
  "emu version" "emu upgrade" "emu upgrade-result" "emu show" "--operator"; do
  CTX="main help"
  has "main help lists '$c'" "$OUT" "$c"
done
for args in "task" "task create" "task list" "task query" "task start" "task stop" "task delete" "task get" \
  "task show" "task versions" "task push" "task check" "task report" "task log" "task log add" \
  "task log query" "task to-production" "task submit" "task review" "task devices" "task oplog" \
  "device ask-firmware" "emu" "emu version" "emu upgrade" "emu upgrade-result" "emu show"; do
  # shellcheck disable=SC2086
  helps $args --help
  # shellcheck disable=SC2086
  helps $args -h
done
helps task get 5 --help
helps task create --name x --help
helps --operator bob task review 3 --help
helps task log query --help
has "log query help says how \$like works" "$OUT" "a pattern without % matches as a substring"
for op in '$in' '$lt' '$lte' '$gt' '$gte' '$like' '$eq'; do has "log query help: $op" "$OUT" "$op"; done
helps task query --help
has "task query help says how \$like works" "$OUT" "a pattern without % matches as a substring"
helps task create --help
for opt in --product-id --name --type --identify --from-version --target-version --target-url --target-md5 \
  --target-size --from-url --from-md5 --from-size --description --task-type --devices --tag-type \
  --rate-limit --gray-percent --ack-timeout --upgrade-timeout; do
  has "task create help: $opt" "$OUT" "$opt"
done

# ==================================================================================== general errors
refused "task without subcommand" 2 task
refused "unknown task subcommand" 2 task frob
refused "unknown task log subcommand" 2 task log frob
refused "task log without subcommand" 2 task log
refused "unknown emu subcommand" 2 emu frob
refused "emu without subcommand" 2 emu
refused "task get without id" 2 task get
refused "task get bad id" 2 task get abc
refused "task get id 0" 2 task get 0
refused "task get two ids" 2 task get 1 2
refused "task get unknown option" 2 task get 1 --bogus
refused "task get unknown task" 1 task get 999
refused "task show unknown task" 1 task show 999
refused "task start unknown task" 1 task start 999
refused "task delete unknown task" 1 task delete 999
refused "invalid operator" 2 --operator 'a b' task start 1
refused "invalid IOTGATE_OPERATOR" 2 env IOTGATE_OPERATOR='x/y' "$CLI" task stop 1
run --redis "$DEAD_URI" task get 1
CTX="unreachable redis"
eq "exit status" 1 "$RC"
like "stderr message" '^iotgate: .+' "$ERR"

# ==================================================================================== fixtures
for c in "product add krt --product-id K1" "product add krt --product-id K2" "product add krt --product-id KQ" "product add krt --product-id KZ" \
  "product add lierda --openid 7ED01E2A --product-id AA30C505 --auth-type 2" \
  "product add emu --product-key PK1" "product add emu --tenant T1"; do
  # shellcheck disable=SC2086
  run $c
  CTX="fixture: $c"
  eq "exit status" 0 "$RC"
done
for d in d1 d2 d3 d4 d5; do run device add krt --product-id K1 --device-id "$d"; done
run device add krt --product-id K2 --device-id e1
run device add krt --product-id KQ --device-id q1
run device add lierda --product-id AA30C505 --node-eui 20MQTTJ000121
run device add emu --product-key PK1 --device gw1
run device add emu --tenant T1 --device gw2
run device add emu --tenant T1 --device gw3
CTX=fixtures
eq "last fixture" 0 "$RC"
eq "K1 devices" "d1 d2 d3 d4 d5" "$(rcli SMEMBERS "${P}devices:K1" | sort | tr '\n' ' ' | sed 's/ $//')"

# ==================================================================================== create
change "create a production task with defaults" 1 task create --product-id K1 --name first \
  --from-version 1.0 --target-version 1.1 "${TGT[@]}"
T1_JSON=$OUT
eq "id" 1 "$(jstr id)"
eq "product_id" K1 "$(jstr product_id)"
eq "name" first "$(jstr name)"
eq "description" "" "$(jstr description)"
eq "type default" wifi "$(jstr type)"
eq "identify default" default "$(jstr identify)"
eq "status waiting" 2 "$(jstr status)"
eq "task_type default" 0 "$(jstr task_type)"
eq "tag_type default" 0 "$(jstr tag_type)"
has "scope all devices" "$OUT" '"scope":{"category":"0","device_list":[]}'
eq "upgrade_count" 0 "$(jstr upgrade_count)"
eq "approved" 0 "$(jstr approved)"
eq "audit_member_id" "" "$(jstr audit_member_id)"
eq "rate_limit default" 0 "$(jstr rate_limit)"
eq "gray_percent default" 100 "$(jstr gray_percent)"
eq "ack_timeout default" 600 "$(jstr ack_timeout)"
eq "upgrade_timeout default" 86400 "$(jstr upgrade_timeout)"
eq "target md5 lower-case" "$MD5L" "$(jstr target_version_md5)"
eq "target url" "$URL" "$(jstr target_version_url)"
eq "target size" 1024 "$(jstr target_version_size)"
eq "from url empty" "" "$(jstr from_version_url)"
like "output starts with the id" '^\{"id":"1","product_id":"K1","name":"first",' "$OUT"
CT=$(jstr create_time)
CA=$(jstr created_at)
like "create_time format yyyy-MM-dd'T'HH:mm:ss.SS'Z'" "$TIME_RE" "$CT"
like "created_at in ms" '^[0-9]{13}$' "$CA"
eq "create_time is created_at in UTC (hundredths)" \
  "$(date -u -d "@$((CA / 1000))" +%Y-%m-%dT%H:%M:%S).$(printf '%02d' $(((CA % 1000) / 10)))Z" "$CT"
NOW_MS=$(( $(date +%s) * 1000 ))
CTX="created_at is now"
if (( CA > NOW_MS - 60000 && CA < NOW_MS + 60000 )); then pass; else fail "created_at $CA not near $NOW_MS"; fi
eq "redis status" 2 "$(rcli HGET "${P}ota:task:1" status)"
eq "redis device_list" "[]" "$(rcli HGET "${P}ota:task:1" device_list)"
eq "redis scope_category" 0 "$(rcli HGET "${P}ota:task:1" scope_category)"
eq "redis create_time" "$CT" "$(rcli HGET "${P}ota:task:1" create_time)"
eq "redis created_at" "$CA" "$(rcli HGET "${P}ota:task:1" created_at)"
eq "redis upgrade_count" 0 "$(rcli HGET "${P}ota:task:1" upgrade_count)"
eq "redis identify" default "$(rcli HGET "${P}ota:task:1" identify)"
eq "in tasks set" 1 "$(rcli SISMEMBER "${P}ota:tasks" 1)"
eq "product zset score = created_at" "$CA" "$(rcli ZSCORE "${P}ota:tasks:K1" 1)"
eq "unique key" 1 "$(rcli GET "${P}ota:unique:K1:wifi:default:1.0")"
eq "task_seq" 1 "$(rcli GET "${P}ota:task_seq")"
eq "one oplog entry" 1 "$(rcli LLEN "${P}ota:oplog:1")"
OPE=$(rcli LINDEX "${P}ota:oplog:1" 0)
eq "oplog operator (\$USER)" tester "$(jstr operator "$OPE")"
eq "oplog action" create "$(jstr action "$OPE")"
eq "oplog time = create_time" "$CT" "$(jstr time "$OPE")"

change "create a test task with every option" 2 --operator alice task create --product-id K1 \
  --name "test mcu" --description "all options" --type mcu --identify 1 --from-version 7 --target-version 8 \
  --from-url https://fw.example.com/7.bin --from-md5 "$MD5" --from-size 0 "${TGT[@]}" --task-type 1 \
  --devices d1,d2,d1 --tag-type 1 --rate-limit 5 --gray-percent 50 --ack-timeout 30 --upgrade-timeout 3600
eq "status stopped" 0 "$(jstr status)"
eq "type" mcu "$(jstr type)"
eq "identify" 1 "$(jstr identify)"
eq "from_version (a number)" 7 "$(jstr from_version)"
eq "from_version_url" https://fw.example.com/7.bin "$(jstr from_version_url)"
eq "from_version_md5" "$MD5L" "$(jstr from_version_md5)"
eq "from_version_size" 0 "$(jstr from_version_size)"
eq "task_type" 1 "$(jstr task_type)"
eq "tag_type" 1 "$(jstr tag_type)"
has "scope: listed devices, deduplicated" "$OUT" '"scope":{"category":"1","device_list":["d1","d2"]}'
eq "rate_limit" 5 "$(jstr rate_limit)"
eq "gray_percent" 50 "$(jstr gray_percent)"
eq "ack_timeout" 30 "$(jstr ack_timeout)"
eq "upgrade_timeout" 3600 "$(jstr upgrade_timeout)"
eq "description" "all options" "$(jstr description)"
eq "redis device_list" '["d1","d2"]' "$(rcli HGET "${P}ota:task:2" device_list)"
eq "oplog operator (--operator)" alice "$(jstr operator "$(rcli LINDEX "${P}ota:oplog:2" 0)")"

N32=$(rep 32 n)
change "name of 32 characters" 3 task create --product-id K1 --name "$N32" --from-version 2.0 --target-version 3.0 "${TGT[@]}"
eq "name" "$N32" "$(jstr name)"
refused "name of 33 characters" 2 task create --product-id K1 --name "${N32}n" --from-version 2.1 --target-version 3.0 "${TGT[@]}"
M32=$(rep 32 '任')
change "name of 32 multi-byte characters (96 bytes)" 4 task create --product-id K1 --name "$M32" --type sub-device \
  --identify 5 --from-version 2.0 --target-version 3.0 "${TGT[@]}" --description "$(rep 250 'é')"
eq "multi-byte name kept" "$M32" "$(rcli HGET "${P}ota:task:4" name)"
eq "description of 250 characters kept" "$(rep 250 'é')" "$(rcli HGET "${P}ota:task:4" description)"
refused "name of 33 multi-byte characters" 2 task create --product-id K1 --name "${M32}任" --type sub-device \
  --identify 6 --from-version 2.0 --target-version 3.0 "${TGT[@]}"
refused "description of 251 characters" 2 task create --product-id K1 --name x --type sub-device --identify 6 \
  --from-version 2.0 --target-version 3.0 "${TGT[@]}" --description "$(rep 251 'é')"
refused "name not UTF-8" 2 task create --product-id K1 --name $'ab\xff' --from-version 2.1 --target-version 3.0 "${TGT[@]}"
refused "name with a newline" 2 task create --product-id K1 --name $'a\nb' --from-version 2.1 --target-version 3.0 "${TGT[@]}"
refused "empty name" 2 task create --product-id K1 --name '' --from-version 2.1 --target-version 3.0 "${TGT[@]}"

# uniqueness: type + identify + from_version per product
refused "duplicate type+identify+from_version" 1 task create --product-id K1 --name dup --from-version 1.0 \
  --target-version 1.2 "${TGT[@]}"
has "the message names the holder" "$ERR" "task 1"
refused "duplicate (wifi identify 0 is default)" 1 task create --product-id K1 --name dup --identify 0 \
  --from-version 1.0 --target-version 1.2 "${TGT[@]}"
refused "duplicate (type given as 2 = mcu)" 1 task create --product-id K1 --name dup --type 2 --identify 1 \
  --from-version 7 --target-version 9 "${TGT[@]}" --tag-type 1 --devices d3
change "same from_version, other identify" 5 task create --product-id K1 --name other-module --identify m2 \
  --from-version 1.0 --target-version 1.1 "${TGT[@]}"
change "same from_version, other type" 6 task create --product-id K1 --name mcu-one --type 2 --identify default \
  --from-version 1.0 --target-version 1.1 "${TGT[@]}"
eq "type 2 is mcu" mcu "$(jstr type)"
change "same combination, other product" 7 task create --product-id K2 --name k2 --from-version 1.0 \
  --target-version 1.1 "${TGT[@]}"

# refusals
refused "unknown product" 1 task create --product-id NOPE --name x --from-version 1 --target-version 2 "${TGT[@]}"
refused "bad product id" 2 task create --product-id 'a/b' --name x --from-version 1 --target-version 2 "${TGT[@]}"
refused "missing --product-id" 2 task create --name x --from-version 1 --target-version 2 "${TGT[@]}"
refused "missing --name" 2 task create --product-id K1 --from-version 9 --target-version 2 "${TGT[@]}"
refused "missing --from-version" 2 task create --product-id K1 --name x --target-version 2 "${TGT[@]}"
refused "missing --target-version" 2 task create --product-id K1 --name x --from-version 9 "${TGT[@]}"
refused "missing --target-url" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-md5 "$MD5" --target-size 1
refused "missing --target-md5" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-url "$URL" --target-size 1
refused "missing --target-size" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-url "$URL" --target-md5 "$MD5"
refused "md5 of 31 digits" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-url "$URL" --target-md5 "${MD5:1}" --target-size 1
refused "md5 not hex" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-url "$URL" --target-md5 "${MD5:1}g" --target-size 1
refused "negative size" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-url "$URL" --target-md5 "$MD5" --target-size -1
refused "size 1e3" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-url "$URL" --target-md5 "$MD5" --target-size 1e3
refused "ftp url" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-url ftp://x/y --target-md5 "$MD5" --target-size 1
refused "url with a space" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  --target-url 'http://x/a b' --target-md5 "$MD5" --target-size 1
refused "version with a space" 2 task create --product-id K1 --name x --from-version '9 1' --target-version 2 "${TGT[@]}"
refused "from = target" 2 task create --product-id K1 --name x --from-version 9 --target-version 9 "${TGT[@]}"
refused "from url without md5/size" 2 task create --product-id K1 --name x --from-version 9 --target-version 2 \
  "${TGT[@]}" --from-url "$URL"
refused "unknown type" 2 task create --product-id K1 --name x --type ble --from-version 9 --target-version 2 "${TGT[@]}"
refused "mcu without identify" 2 task create --product-id K1 --name x --type mcu --from-version 9 --target-version 2 "${TGT[@]}"
refused "sub-device without identify" 2 task create --product-id K1 --name x --type sub-device --from-version 9 \
  --target-version 2 "${TGT[@]}"
refused "identify with :" 2 task create --product-id K1 --name x --identify 'a:b' --from-version 9 --target-version 2 "${TGT[@]}"
refused "identify updated_at" 2 task create --product-id K1 --name x --identify updated_at --from-version 9 \
  --target-version 2 "${TGT[@]}"
refused "test task without devices" 2 task create --product-id K1 --name x --tag-type 1 --from-version 9 \
  --target-version 2 "${TGT[@]}"
refused "unknown device" 1 task create --product-id K1 --name x --devices d1,nope --from-version 9 --target-version 2 "${TGT[@]}"
refused "device of another product" 1 task create --product-id K1 --name x --devices e1 --from-version 9 \
  --target-version 2 "${TGT[@]}"
refused "empty --devices" 2 task create --product-id K1 --name x --devices '' --from-version 9 --target-version 2 "${TGT[@]}"
refused "--devices with an empty id" 2 task create --product-id K1 --name x --devices d1,,d2 --from-version 9 \
  --target-version 2 "${TGT[@]}"
refused "--tag-type 2" 2 task create --product-id K1 --name x --tag-type 2 --from-version 9 --target-version 2 "${TGT[@]}"
refused "--task-type 2" 2 task create --product-id K1 --name x --task-type 2 --from-version 9 --target-version 2 "${TGT[@]}"
refused "--gray-percent 0" 2 task create --product-id K1 --name x --gray-percent 0 --from-version 9 --target-version 2 "${TGT[@]}"
refused "--gray-percent 101" 2 task create --product-id K1 --name x --gray-percent 101 --from-version 9 --target-version 2 "${TGT[@]}"
refused "--ack-timeout 0" 2 task create --product-id K1 --name x --ack-timeout 0 --from-version 9 --target-version 2 "${TGT[@]}"
refused "--rate-limit -1" 2 task create --product-id K1 --name x --rate-limit -1 --from-version 9 --target-version 2 "${TGT[@]}"
refused "unknown option" 2 task create --product-id K1 --name x --bogus --from-version 9 --target-version 2 "${TGT[@]}"
refused "bad operator" 2 --operator 'no way' task create --product-id K1 --name x --from-version 9 --target-version 2 "${TGT[@]}"
eq "task_seq untouched by refusals" 7 "$(rcli GET "${P}ota:task_seq")"

# ==================================================================================== get
ok "task get" task get 1
eq "get id" 1 "$(jstr id)"
eq "get status" 2 "$(jstr status)"
eq "get surplus_count (no versions yet)" 0 "$(jnum surplus_count)"
eq "get create_time" "$CT" "$(jstr create_time)"
eq "get is create plus surplus_count" "$T1_JSON" "$(printf '%s' "$OUT" | sed 's/"surplus_count":0,//')"

# ==================================================================================== start / stop
refused "start a waiting production task" 1 task start 1
has "reason: review" "$ERR" "review"
refused "stop a task that is not running" 1 task stop 1
refused "stop a stopped test task" 1 task stop 2
change "start a test task" 2 task start 2
eq "running" 1 "$(jstr status)"
eq "redis status" 1 "$(rcli HGET "${P}ota:task:2" status)"
refused "start a running task" 1 task start 2
has "reason: already running" "$ERR" "already running"
change "stop the test task" 2 task stop 2
eq "stopped" 0 "$(jstr status)"
change "start it again" 2 task start 2
eq "running" 1 "$(jstr status)"

# ==================================================================================== review flow (ops 11, 12)
refused "submit without --reviewer" 2 task submit 1
refused "submit with a bad reviewer" 2 task submit 1 --reviewer 'a b'
refused "submit a test task" 1 task submit 2 --reviewer bob
change "submit (by anyone)" 1 --operator carol task submit 1 --reviewer bob
eq "in review" 3 "$(jstr status)"
eq "audit_member_id" bob "$(jstr audit_member_id)"
eq "redis audit_member_id" bob "$(rcli HGET "${P}ota:task:1" audit_member_id)"
refused "submit again" 1 task submit 1 --reviewer bob
refused "start a task in review" 1 task start 1
refused "review by another operator" 1 --operator carol task review 1 --approve
has "reason names the reviewer" "$ERR" "bob"
refused "review by the default operator" 1 task review 1 --reject
refused "review with both verdicts" 2 --operator bob task review 1 --approve --reject
refused "review without a verdict" 2 --operator bob task review 1
IOTGATE_OPERATOR=bob change "reject by the reviewer (\$IOTGATE_OPERATOR)" 1 task review 1 --reject
eq "back to waiting" 2 "$(jstr status)"
eq "reviewer cleared" "" "$(jstr audit_member_id)"
eq "not approved" 0 "$(jstr approved)"
refused "start after a rejection" 1 task start 1
refused "review a waiting task" 1 --operator bob task review 1 --approve
change "submit again" 1 task submit 1 --reviewer bob
change "approve by the reviewer (--operator)" 1 --operator bob task review 1 --approve
eq "running" 1 "$(jstr status)"
eq "approved" 1 "$(jstr approved)"
eq "reviewer cleared" "" "$(jstr audit_member_id)"
eq "redis approved" 1 "$(rcli HGET "${P}ota:task:1" approved)"
refused "review a running task" 1 --operator bob task review 1 --approve
refused "submit a running task" 1 task submit 1 --reviewer bob
change "stop the approved task" 1 task stop 1
change "an approved task starts again without a review" 1 task start 1
eq "running" 1 "$(jstr status)"

# ==================================================================================== oplog (op 15)
ok "oplog of task 1" task oplog 1 --limit 100
eq "oplog count" 7 "$(jnum count)"
eq "oplog actions" "create submit reject submit approve stop start" "$(jstrs action)"
eq "oplog operators (opt_name)" "tester carol bob tester bob tester tester" "$(jstrs opt_name)"
eq "opt_id = operator" "tester carol bob tester bob tester tester" "$(jstrs opt_id)"
eq "opt_account = operator" "tester carol bob tester bob tester tester" "$(jstrs opt_account)"
eq "oplog ids" "1 2 3 4 5 6 7" "$(jnums id)"
CTX="oplog time format"
for t in $(jstrs create_date); do like "create_date" "$TIME_RE" "$t"; done
eq "first entry is the creation" "$CT" "$(jstr create_date)"
has "content of the reject" "$OUT" '"content":"rejected: status 3 in review -> 2 waiting"'
ok "oplog paging" task oplog 1 --offset 1 --limit 2
eq "paged count is the total" 7 "$(jnum count)"
eq "paged actions" "submit reject" "$(jstrs action)"
eq "paged ids" "2 3" "$(jnums id)"
ok "oplog default limit 10" task oplog 1
eq "all 7" 7 "$(lines "$(printf '%s' "$OUT" | grep -o '"action"' || true)")"
refused "oplog of an unknown task" 1 task oplog 999
refused "oplog --limit 0" 2 task oplog 1 --limit 0
refused "oplog --limit 1001" 2 task oplog 1 --limit 1001
refused "oplog --offset -1" 2 task oplog 1 --offset -1

# ==================================================================================== to-production (op 10)
refused "to-production of a production task" 1 task to-production 1
change "test task for to-production" 8 task create --product-id K1 --name tp1 --identify tp --from-version 1 \
  --target-version 2 "${TGT[@]}" --tag-type 1 --devices d1
change "start it" 8 task start 8
change "to-production, new name and description" 8 --operator dave task to-production 8 --name "prod now" \
  --description "now for real"
eq "tag_type production" 0 "$(jstr tag_type)"
eq "status waiting" 2 "$(jstr status)"
eq "not approved" 0 "$(jstr approved)"
eq "name" "prod now" "$(jstr name)"
eq "description" "now for real" "$(jstr description)"
has "scope unchanged" "$OUT" '"scope":{"category":"1","device_list":["d1"]}'
eq "redis tag_type" 0 "$(rcli HGET "${P}ota:task:8" tag_type)"
eq "oplog: to-production by dave" "to-production dave" \
  "$(printf '%s %s' "$(jstr action "$(rcli LINDEX "${P}ota:oplog:8" -1)")" "$(jstr operator "$(rcli LINDEX "${P}ota:oplog:8" -1)")")"
refused "a converted task needs a review to start" 1 task start 8
refused "to-production twice" 1 task to-production 8
change "test task 9" 9 task create --product-id K1 --name tp2 --identify tp --from-version 2 --target-version 3 \
  "${TGT[@]}" --tag-type 1 --devices d1,d2
change "to-production with scope category 0" 9 task to-production 9 --scope-category 0
has "every device" "$OUT" '"scope":{"category":"0","device_list":[]}'
eq "name kept" tp2 "$(jstr name)"
change "test task 10" 10 task create --product-id K1 --name tp3 --identify tp --from-version 3 --target-version 4 \
  "${TGT[@]}" --tag-type 1 --devices d1
change "to-production with new devices" 10 task to-production 10 --scope-category 1 --devices d3,d4,d3
has "listed devices" "$OUT" '"scope":{"category":"1","device_list":["d3","d4"]}'
change "test task 11" 11 task create --product-id K1 --name tp4 --identify tp --from-version 4 --target-version 5 \
  "${TGT[@]}" --tag-type 1 --devices d5
refused "to-production: category 1 without devices" 2 task to-production 11 --scope-category 1
refused "to-production: category 0 with devices" 2 task to-production 11 --scope-category 0 --devices d1
refused "to-production: unknown device" 1 task to-production 11 --devices nope
refused "to-production: device of another product" 1 task to-production 11 --devices e1
refused "to-production: name of 33 characters" 2 task to-production 11 --name "${N32}x"
refused "to-production: unknown task" 1 task to-production 999
refused "to-production: bad category" 2 task to-production 11 --scope-category 2

# ==================================================================================== devices (op 13)
rcli HSET "${P}ota:progress:2" d2 '{"state":"notified","down_id":"X2","notified_at":1700000000}' >/dev/null
change "devices --add (deduplicated)" 2 task devices 2 --add d3,d1
has "added" "$OUT" '"device_list":["d1","d2","d3"]'
change "devices --remove" 2 task devices 2 --remove d2
has "removed" "$OUT" '"device_list":["d1","d3"]'
eq "progress of a removed device kept" '{"state":"notified","down_id":"X2","notified_at":1700000000}' \
  "$(rcli HGET "${P}ota:progress:2" d2)"
change "devices --replace" 2 task devices 2 --replace d4,d4,d5
has "replaced" "$OUT" '"scope":{"category":"1","device_list":["d4","d5"]}'
eq "redis device_list" '["d4","d5"]' "$(rcli HGET "${P}ota:task:2" device_list)"
eq "still a running test task" "1 1" "$(rcli HMGET "${P}ota:task:2" status tag_type | tr '\n' ' ' | sed 's/ $//')"
refused "devices of a production task" 1 task devices 1 --add d1
refused "devices: unknown device" 1 task devices 2 --add nope
refused "devices: device of another product" 1 task devices 2 --replace e1
refused "devices: remove a device not listed" 1 task devices 2 --remove d1
refused "devices: remove every device" 1 task devices 2 --remove d4,d5
refused "devices: two modes" 2 task devices 2 --add d1 --remove d4
refused "devices: no mode" 2 task devices 2
refused "devices: empty list" 2 task devices 2 --add ''
refused "devices: bad id" 2 task devices 2 --add 'a/b'
refused "devices: unknown task" 1 task devices 999 --add d1
eq "oplog: devices actions" "devices devices devices" \
  "$(rcli LRANGE "${P}ota:oplog:2" -3 -1 | grep -o '"action":"[^"]*"' | sed 's/"action":"//; s/"$//' | tr '\n' ' ' | sed 's/ $//')"

# ==================================================================================== list / query (ops 2, 7)
qtask() { # NAME ARGS...: create a task of product KQ; sets QID
  local name=$1
  shift
  run task create --product-id KQ --name "$name" "$@" "${TGT[@]}"
  CTX="KQ task $name"
  eq "exit status" 0 "$RC"
  QID=$(jstr id)
}
qtask alpha --from-version a1 --target-version a2; Q1=$QID
qtask "beta one" --type mcu --identify 1 --from-version b1 --target-version b2; Q2=$QID
qtask "Beta two" --from-version c1 --target-version c2 --tag-type 1 --devices q1; Q3=$QID
qtask gamma --type sub-device --identify 5 --from-version d1 --target-version d2; Q4=$QID
qtask delta --from-version e1 --target-version e2 --tag-type 1 --devices q1; Q5=$QID
eq "KQ task ids" "12 13 14 15 16" "$Q1 $Q2 $Q3 $Q4 $Q5"

ok "list" task list --product-id KQ
like "a JSON array" '^\[\{"id":' "$OUT"
eq "creation order" "$Q1 $Q2 $Q3 $Q4 $Q5" "$(jstrs id)"
eq "surplus_count in every item" 5 "$(lines "$(printf '%s' "$OUT" | grep -o '"surplus_count":0' || true)")"
ok "list --limit 2" task list --product-id KQ --limit 2
eq "first page" "$Q1 $Q2" "$(jstrs id)"
ok "list --offset 2 --limit 2" task list --product-id KQ --offset 2 --limit 2
eq "second page" "$Q3 $Q4" "$(jstrs id)"
ok "list --offset 4" task list --product-id KQ --offset 4
eq "last page" "$Q5" "$(jstrs id)"
ok "list past the end" task list --product-id KQ --offset 10
eq "empty page" "[]" "$OUT"
ok "list --type wifi" task list --product-id KQ --type wifi
eq "wifi tasks" "$Q1 $Q3 $Q5" "$(jstrs id)"
ok "list --type 2 (mcu)" task list --product-id KQ --type 2
eq "mcu tasks" "$Q2" "$(jstrs id)"
ok "list --type sub-device" task list --product-id KQ --type sub-device
eq "sub-device tasks" "$Q4" "$(jstrs id)"
ok "list --tag-type 1" task list --product-id KQ --tag-type 1
eq "test tasks" "$Q3 $Q5" "$(jstrs id)"
ok "list --tag-type 0 --type wifi" task list --product-id KQ --tag-type 0 --type wifi
eq "production wifi tasks" "$Q1" "$(jstrs id)"
ok "list of a product without tasks" task list --product-id AA30C505
eq "empty" "[]" "$OUT"
ok "list of K1: numeric id order" task list --product-id K1 --limit 1000
eq "K1 ids in creation order" "1 2 3 4 5 6 8 9 10 11" "$(jstrs id | tr ' ' '\n' | grep -v '^$' | tr '\n' ' ' | sed 's/ $//' | sed 's/ d[0-9]//g')"

ok "query without conditions" task query --product-id KQ
like "count and list" '^\{"count":5,"list":\[\{"id":' "$OUT"
ok "query --limit 1" task query --product-id KQ --limit 1
eq "count is before paging" 5 "$(jnum count)"
eq "one item" "$Q1" "$(jstrs id)"
qry() { # DESC EXPECTED_IDS ARGS...
  local desc=$1 want=$2
  shift 2
  ok "query: $desc" task query --product-id KQ "$@"
  eq "query: $desc" "$want" "$(jstrs id)"
}
qry 'name $like substring, any case' "$Q2 $Q3" --query '{"name":{"$like":"BETA"}}'
eq "count" 2 "$(jnum count)"
qry 'name $like %a (ends with a)' "$Q1 $Q4 $Q5" --query '{"name":{"$like":"%a"}}'
qry 'name $like b%o' "$Q3" --query '{"name":{"$like":"b%o"}}'
qry 'name $like B% (starts with)' "$Q2 $Q3" --query '{"name":{"$like":"B%"}}'
qry 'name $like a%a' "$Q1" --query '{"name":{"$like":"a%a"}}'
qry 'name $like %et%on%' "$Q2" --query '{"name":{"$like":"%et%on%"}}'
qry 'name $like no match' "" --query '{"name":{"$like":"zeta"}}'
eq "count 0" 0 "$(jnum count)"
qry 'name $eq' "$Q4" --query '{"name":{"$eq":"gamma"}}'
qry 'name $eq is exact' "" --query '{"name":{"$eq":"Gamma"}}'
qry 'name bare value' "$Q5" --query '{"name":"delta"}'
qry 'id $eq a number' "$Q2" --query "{\"id\":{\"\$eq\":$Q2}}"
qry '_id $eq a string' "$Q3" --query "{\"_id\":{\"\$eq\":\"$Q3\"}}"
qry 'id and name both hold' "" --query "{\"_id\":{\"\$eq\":\"$Q3\"},\"name\":{\"\$like\":\"alpha\"}}"
qry 'id and name both hold (match)' "$Q1" --query "{\"_id\":{\"\$eq\":\"$Q1\"},\"name\":{\"\$like\":\"alpha\"}}"
qry 'query with --type' "$Q1 $Q3 $Q5" --type wifi --query '{"name":{"$like":"a"}}'
qry 'query with --tag-type' "$Q3" --tag-type 1 --query '{"name":{"$like":"beta"}}'
qry 'order name asc' "$Q3 $Q1 $Q2 $Q5 $Q4" --order '{"name":"asc"}'
qry 'order name desc' "$Q4 $Q5 $Q2 $Q1 $Q3" --order '{"name":"desc"}'
qry 'order id desc' "$Q5 $Q4 $Q3 $Q2 $Q1" --order '{"id":"desc"}'
qry 'order tag_type desc, then id desc' "$Q5 $Q3 $Q4 $Q2 $Q1" --order '{"tag_type":"desc","id":"desc"}'
qry 'order id asc, then tag_type desc' "$Q1 $Q2 $Q3 $Q4 $Q5" --order '{"id":"asc","tag_type":"desc"}'
qry 'order type asc (then id)' "$Q2 $Q4 $Q1 $Q3 $Q5" --order '{"type":"asc"}'
qry 'order and paging' "$Q1 $Q2" --order '{"name":"asc"}' --offset 1 --limit 2
eq "count with paging" 5 "$(jnum count)"
qry 'query, order and paging' "$Q5" --query '{"name":{"$like":"%a"}}' --order '{"name":"asc"}' --offset 1 --limit 1
eq "count of the query" 3 "$(jnum count)"
ok "query K1 order id desc (numeric)" task query --product-id K1 --order '{"_id":"desc"}' --limit 3
eq "numeric order" "11 10 9" "$(jstrs id)"
refused "query: not JSON" 2 task query --product-id KQ --query '{name'
refused "query: an array" 2 task query --product-id KQ --query '[1,2]'
refused "query: field not queryable" 2 task query --product-id KQ --query '{"description":{"$eq":"x"}}'
refused "query: operator not supported" 2 task query --product-id KQ --query '{"name":{"$lt":"x"}}'
refused "query: \$like with an object" 2 task query --product-id KQ --query '{"name":{"$like":{"a":1}}}'
refused "order: bad direction" 2 task query --product-id KQ --order '{"name":"up"}'
refused "order: unknown field" 2 task query --product-id KQ --order '{"color":"asc"}'
refused "order: not JSON" 2 task query --product-id KQ --order 'name'
refused "list has no --query" 2 task list --product-id KQ --query '{}'
refused "list --limit 0" 2 task list --product-id KQ --limit 0
refused "list --limit 1001" 2 task list --product-id KQ --limit 1001
refused "list --offset x" 2 task list --product-id KQ --offset x
refused "list --type bogus" 2 task list --product-id KQ --type bogus
refused "list --tag-type 3" 2 task list --product-id KQ --tag-type 3
refused "list of an unknown product" 1 task list --product-id NOPE
refused "list without --product-id" 2 task list
refused "query of an unknown product" 1 task query --product-id NOPE

# ==================================================================================== name indexes
# A product's task names are indexed twice: P ota:task_names:PID (id -> name) and P ota:task_names_ci:PID, a sorted
# set of "lower-case name NUL name NUL id" from which a name $eq or a $like with a text before its first '%' reads
# only the tasks whose names start with it. Queries give the same answers with and without it, and a page picked
# from a long list is the page of the whole sorted list. Own prefix (own task ids), removed at the end.
NX=(--prefix nx:)
nrun() { run "${NX[@]}" "$@"; }
nrun product add krt --product-id KN
NX_NAMES=(alpha Alpha ALPHA 'beta-2' 'beta-10' 'Beta-1' b 10 9 100 1.5 -2 07 7 1e3 x1 X1 '1a' 'α-unicode' 'task 5' 'Task-50' 'task-500' 'tASK-6' zeta)
for i in "${!NX_NAMES[@]}"; do
  nrun task create --product-id KN --name "${NX_NAMES[$i]}" --from-version "n$i" --target-version "m$i" "${TGT[@]}"
  CTX="KN task ${NX_NAMES[$i]}"
  eq "exit status" 0 "$RC"
done
CTX="name indexes"
nci() { rcli ZRANGE nx:ota:task_names_ci:KN 0 -1 | tr '\0' '|'; }
eq "one entry per task" "${#NX_NAMES[@]}" "$(rcli ZCARD nx:ota:task_names_ci:KN)"
has "entry: lower-case name, name, id" "$(nci)" "alpha|Alpha|2"
eq "every score is 0" "0" "$(rcli ZRANGE nx:ota:task_names_ci:KN 0 -1 WITHSCORES | sed -n '2~2p' | sort -u)"
NX_QUERIES=('{"name":{"$like":"alpha%"}}' '{"name":{"$like":"ALPHA"}}' '{"name":"Alpha"}' '{"name":{"$eq":"alpha"}}'
  '{"name":{"$like":"beta-%"}}' '{"name":{"$like":"b%1"}}' '{"name":{"$like":"1%"}}' '{"name":{"$like":"task%5%"}}'
  '{"name":{"$like":"t%"}}' '{"name":{"$like":"%a"}}' '{"name":{"$like":"x%"},"id":{"$like":"1%"}}' '{"name":{"$like":"α%"}}'
  '{"name":{"$like":"zz%"}}' '')
NX_ORDERS=('{"name":"asc"}' '{"name":"desc"}' '{"id":"desc"}' '{"created_at":"asc","name":"desc"}' '')
# every query, order and page, one line each: the task_list function of the library the CLI loaded, called
# directly (one redis-cli for them all)
rq() { local v=${1//\\/\\\\}; v=${v//\"/\\\"}; printf '"%s"' "$v"; }
nx_answers() {
  local q o page fn
  fn=$(rcli FUNCTION LIST LIBRARYNAME iotgate | grep -m1 -E '^iotgate_[0-9a-f]{12}_task_list$')
  for q in "${NX_QUERIES[@]}"; do
    for o in "${NX_ORDERS[@]}"; do
      for page in '0 1' '1 2' '3 100'; do
        printf 'FCALL %s 0 nx: query KN %s %s "" "" %s %s\n' "$fn" "${page% *}" "${page#* }" "$(rq "$q")" "$(rq "$o")"
      done
    done
  done | rcli | awk '{
    s = $0; out = $0
    if (match(s, /^\{"count":[0-9]+/)) {
      out = substr(s, 2, RLENGTH - 1)
      while (match(s, /"id":"[0-9]+"/)) { out = out " " substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH) }
    }
    print out
  }'
}
zrangebylex_calls() { rcli INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_zrangebylex:calls=\([0-9]*\),.*/\1/p'; }
BEFORE=$(zrangebylex_calls)
WITH_INDEX=$(nx_answers)
ne "the prefix queries read the index" "${BEFORE:-0}" "$(zrangebylex_calls)"
eq "first answer: alpha% by name, first of 3" '"count":3 "id":"3"' "$(printf '%s\n' "$WITH_INDEX" | head -n 1)"
rcli DEL nx:ota:task_names_ci:KN >/dev/null
BEFORE=$(zrangebylex_calls)
eq "the same answers without the index (every task's name read)" "$WITH_INDEX" "$(nx_answers)"
eq "which is then not read" "$BEFORE" "$(zrangebylex_calls)"
# a page of the sorted list, picked without sorting the rest, is that page of the whole list
for o in '{"name":"asc"}' '{"name":"desc"}' '{"id":"desc"}' '{"created_at":"desc"}'; do
  for q in '' '{"name":{"$like":"%a%"}}'; do
    ALL=$("$CLI" "${NX[@]}" task query --product-id KN --query "$q" --order "$o" --limit 100 | grep -o '"id":"[0-9]*"' | tr '\n' ' ')
    PAGES=
    for off in 0 1 2 3 4 5; do
      PAGES+=$("$CLI" "${NX[@]}" task query --product-id KN --query "$q" --order "$o" --offset "$off" --limit 1 |
        grep -o '"id":"[0-9]*"' | tr '\n' ' ')
    done
    eq "pages of 1 = the sorted list ($o $q)" "$(printf '%s' "$ALL" | cut -d' ' -f1-6) " "$PAGES"
  done
done
nrun task create --product-id KN --name "Later" --from-version n99 --target-version m99 "${TGT[@]}"
LATER=$(jstr id)
eq "the next create makes the index again, with every task" "$(( ${#NX_NAMES[@]} + 1 ))" "$(rcli ZCARD nx:ota:task_names_ci:KN)"
has "the new task is in it" "$(nci)" "later|Later|$LATER"
NX_QUERIES+=('{"name":{"$like":"la%"}}')
WITH_INDEX=$(nx_answers)
rcli DEL nx:ota:task_names_ci:KN >/dev/null
eq "the same answers without the index again" "$WITH_INDEX" "$(nx_answers)"
nrun task create --product-id KN --name "Test one" --from-version n98 --target-version m98 --tag-type 1 --devices kn1 "${TGT[@]}"
eq "a test task needs a device of KN" 1 "$RC"
nrun device add krt --product-id KN --device-id kn1
nrun task create --product-id KN --name "Test one" --from-version n98 --target-version m98 --tag-type 1 --devices kn1 "${TGT[@]}"
TONE=$(jstr id)
nrun task to-production "$TONE" --name "Prod one"
eq "to-production renames" 0 "$RC"
hasnt "the old name is out of the index" "$(nci)" "test one|"
has "the new name is in it" "$(nci)" "prod one|Prod one|$TONE"
eq "the hash has it too" "Prod one" "$(rcli HGET nx:ota:task_names:KN "$TONE")"
"$CLI" "${NX[@]}" task query --product-id KN --query '{"name":{"$like":"prod%"}}' >"$TMP/q.json"
eq "found by its new name" "$TONE" "$(jstr id "$(cat "$TMP/q.json")")"
nrun task delete "$LATER"
eq "delete" 0 "$RC"
hasnt "a deleted task is out of the index" "$(nci)" "|Later|"
eq "and out of the hash" 0 "$(rcli HEXISTS nx:ota:task_names:KN "$LATER")"
eq "index and hash agree" "$(rcli HLEN nx:ota:task_names:KN)" "$(rcli ZCARD nx:ota:task_names_ci:KN)"
nrun product delete KN
eq "product delete" 0 "$RC"
eq "product delete removes both indexes" 0 "$(rcli EXISTS nx:ota:task_names:KN nx:ota:task_names_ci:KN)"
rcli --scan --pattern 'nx:*' | while IFS= read -r k; do rcli DEL "$k" >/dev/null; done

# ==================================================================================== surplus_count, show, versions
# task 1: K1, wifi / default, 1.0 -> 1.1, every device of the product; versions and progress written
# directly, as the plugin would
rcli HSET "${P}ota:version:K1:d1" default 1.0 updated_at 1 >/dev/null
rcli HSET "${P}ota:version:K1:d2" default 1.0 "hw:default" 0.1 updated_at 1 >/dev/null
rcli HSET "${P}ota:version:K1:d3" default 1.1 updated_at 1 >/dev/null
rcli HSET "${P}ota:version:K1:d4" 1 7 "hw:default" 1.0 updated_at 1 >/dev/null
rcli HSET "${P}ota:progress:1" d2 '{"state":"succeeded","down_id":"A2"}' d3 '{"state":"notified","down_id":"A3"}' \
  x9 '{"state":"failed"}' d4 '{"state":"acked"}' d5 '{"state":"timed_out"}' >/dev/null
ok "get task 1" task get 1
eq "surplus_count: at the from version and not succeeded (d1)" 1 "$(jnum surplus_count)"
ok "show task 1" task show 1
eq "show surplus_count" 1 "$(jnum surplus_count)"
has "devices_by_state" "$OUT" '"devices_by_state":{"pending":1,"notified":1,"acked":1,"succeeded":1,"failed":1,"timed_out":1}'
eq "show id" 1 "$(jstr id)"
rcli HSET "${P}ota:version:K1:d5" default 1.0 >/dev/null
ok "show after d5 reports 1.0 (it has a progress entry)" task show 1
has "devices_by_state" "$OUT" '"pending":1,'
eq "surplus_count counts d5 now" 2 "$(jnum surplus_count)"
rcli HDEL "${P}ota:version:K1:d5" default >/dev/null
ok "query shows surplus_count" task query --product-id K1 --query '{"id":1}'
eq "surplus_count in query" 1 "$(jnum surplus_count)"
ok "list shows surplus_count" task list --product-id K1 --limit 1
eq "surplus_count in list" 1 "$(jnum surplus_count)"
ok "versions of task 1" task versions 1
eq "versions" '{"total":5,"versions":[{"version":"1.0","count":2,"percent":40},{"version":null,"count":2,"percent":40},{"version":"1.1","count":1,"percent":20}]}' "$OUT"
# task 2: mcu / 1, from 7, listed d4 (version 7) and d5 (never reported); d2's progress is kept
ok "show task 2 (listed devices)" task show 2
has "devices_by_state" "$OUT" '"devices_by_state":{"pending":2,"notified":1,"acked":0,"succeeded":0,"failed":0,"timed_out":0}'
eq "surplus_count" 1 "$(jnum surplus_count)"
ok "versions of task 2" task versions 2
eq "versions" '{"total":2,"versions":[{"version":"7","count":1,"percent":50},{"version":null,"count":1,"percent":50}]}' "$OUT"
change "test task for thirds" 17 task create --product-id K1 --name thirds --identify th --from-version 5.0 \
  --target-version 6.0 "${TGT[@]}" --tag-type 1 --devices d1,d2,d3
rcli HSET "${P}ota:version:K1:d1" th 5.0 >/dev/null
rcli HSET "${P}ota:version:K1:d2" th 5.0 >/dev/null
rcli HSET "${P}ota:version:K1:d3" th 6.0 >/dev/null
ok "versions in thirds" task versions 17
eq "versions" '{"total":3,"versions":[{"version":"5.0","count":2,"percent":66.67},{"version":"6.0","count":1,"percent":33.33}]}' "$OUT"
ok "get task 17" task get 17
eq "surplus_count" 2 "$(jnum surplus_count)"
ok "versions: one device that never reported" task versions "$Q1"
eq "versions" '{"total":1,"versions":[{"version":null,"count":1,"percent":100}]}' "$OUT"
refused "versions of an unknown task" 1 task versions 999

# ==================================================================================== check (op 5)
B4=$(( $(fnv1a d4) % 100 ))
B5=$(( $(fnv1a d5) % 100 ))
CTX="gray buckets"
eq "FNV-1a of 'a' (known vector)" 3826002220 "$(fnv1a a)"
chk() { # DESC EXPECTED_ID (empty: {}) ARGS...
  local desc=$1 want=$2
  shift 2
  ok "check: $desc" task check "$@"
  if [[ -z $want ]]; then eq "check: $desc" "{}" "$OUT"; else eq "check: $desc" "$want" "$(jstr id)"; fi
}
if (( B4 < 50 )); then W4=2; else W4=; fi
if (( B5 < 50 )); then W5=2; else W5=; fi
chk "listed device d4 at the from version (gray 50, bucket $B4)" "$W4" --product-id K1 --device d4 --type mcu --identify 1 --current-version 7
chk "listed device d5 (gray 50, bucket $B5)" "$W5" --product-id K1 --device d5 --type mcu --identify 1 --current-version 7
chk "type given as 2" "$W4" --product-id K1 --device d4 --type 2 --identify 1 --current-version 7
chk "device not listed" "" --product-id K1 --device d1 --type mcu --identify 1 --current-version 7
chk "other version" "" --product-id K1 --device d4 --type mcu --identify 1 --current-version 8
chk "other identify" "" --product-id K1 --device d4 --type mcu --identify 2 --current-version 7
chk "other type" "" --product-id K1 --device d4 --type sub-device --identify 1 --current-version 7
chk "every device, identify default by absence" 1 --product-id K1 --device d1 --type wifi --current-version 1.0
chk "identify 0 means default for wifi" 1 --product-id K1 --device d3 --type wifi --identify 0 --current-version 1.0
has "full task" "$OUT" '"target_version":"1.1","target_version_url":"http://fw.example.com/fw-1.1.bin"'
chk "a waiting task does not apply" "" --product-id K1 --device d1 --type wifi --identify m2 --current-version 1.0
change "stop task 1" 1 task stop 1
chk "a stopped task does not apply" "" --product-id K1 --device d1 --type wifi --current-version 1.0
change "start task 1" 1 task start 1
refused "check: unknown device" 1 task check --product-id K1 --device nope --type wifi --current-version 1.0
refused "check: device of another product" 1 task check --product-id K1 --device e1 --type wifi --current-version 1.0
refused "check: unknown product" 1 task check --product-id NOPE --device d1 --type wifi --current-version 1.0
refused "check: mcu without identify" 2 task check --product-id K1 --device d4 --type mcu --current-version 7
refused "check: missing --current-version" 2 task check --product-id K1 --device d4 --type mcu --identify 1
refused "check: missing --type" 2 task check --product-id K1 --device d4 --current-version 7
refused "check: bad type" 2 task check --product-id K1 --device d4 --type ble --current-version 7

# ==================================================================================== report (op 6)
rcli HSET "${P}ota:progress:2" d5 '{"state":"acked","down_id":"D5","notified_at":100,"acked_at":101}' >/dev/null
LOGS0=$(rcli LLEN "${P}ota:logs")
refused "report success at another version" 1 task report 2 --device d4 --last-version 7 --current-version 7.5 --result 0
refused "report: device not in scope" 1 task report 2 --device d1 --last-version 7 --current-version 8 --result 0
refused "report: unknown device" 1 task report 2 --device nope --last-version 7 --current-version 8 --result 0
refused "report: type mismatch" 1 task report 2 --device d4 --last-version 7 --current-version 8 --result 0 --type wifi
refused "report: identify mismatch" 1 task report 2 --device d4 --last-version 7 --current-version 8 --result 0 --identify 2
refused "report: bad result" 2 task report 2 --device d4 --last-version 7 --current-version 8 --result 2
refused "report: missing --last-version" 2 task report 2 --device d4 --current-version 8 --result 0
refused "report: missing --result" 2 task report 2 --device d4 --last-version 7 --current-version 8
refused "report: missing --device" 2 task report 2 --last-version 7 --current-version 8 --result 0
refused "report: bad date" 2 task report 2 --device d4 --last-version 7 --current-version 8 --result 0 --start-date 2015-10-09
refused "report: unknown task" 1 task report 999 --device d4 --last-version 7 --current-version 8 --result 0
change "report success" 2 --operator erin task report 2 --device d4 --type mcu --identify 1 --mod M1 \
  --last-version 7 --current-version 8 --result 0 --desc fine --start-date 2015-10-09T08:15:40.843Z \
  --end-date 2015-10-09T08:25:40.843Z
eq "upgrade_count" 1 "$(jnum upgrade_count)"
like "progress" '"progress":\{"state":"succeeded","finished_at":[0-9]+,"reported":"8",' "$OUT"
PROG=$(rcli HGET "${P}ota:progress:2" d4)
eq "redis progress state" succeeded "$(jstr state "$PROG")"
eq "redis progress reported" 8 "$(jstr reported "$PROG")"
eq "redis progress last_version" 7 "$(jstr last_version "$PROG")"
eq "redis progress mod" M1 "$(jstr mod "$PROG")"
eq "redis progress desc" fine "$(jstr desc "$PROG")"
eq "redis progress start_date" 2015-10-09T08:15:40.843Z "$(jstr start_date "$PROG")"
eq "redis upgrade_count" 1 "$(rcli HGET "${P}ota:task:2" upgrade_count)"
eq "version of the module written" 8 "$(rcli HGET "${P}ota:version:K1:d4" 1)"
like "version updated_at" '^[0-9]{10}$' "$(rcli HGET "${P}ota:version:K1:d4" updated_at)"
eq "an OTA log with status 2" $((LOGS0 + 1)) "$(rcli LLEN "${P}ota:logs")"
LOGE=$(rcli LINDEX "${P}ota:logs" -1)
like "the log entry" '^\{"id":[0-9]+,"product_id":"K1","task_id":"2","device_id":"d4","device_mac":"","device_sn":"","status":2,"execute_time":"[^"]+"\}$' "$LOGE"
eq "oplog: report by erin" "report erin" \
  "$(printf '%s %s' "$(jstr action "$(rcli LINDEX "${P}ota:oplog:2" -1)")" "$(jstr operator "$(rcli LINDEX "${P}ota:oplog:2" -1)")")"
refused "report a device that already succeeded" 1 task report 2 --device d4 --last-version 7 --current-version 8 --result 0
change "report failure" 2 task report 2 --device d5 --last-version 7 --current-version 7 --result 1
eq "upgrade_count unchanged" 1 "$(jnum upgrade_count)"
PROG=$(rcli HGET "${P}ota:progress:2" d5)
eq "failed" failed "$(jstr state "$PROG")"
eq "plugin's down_id kept" D5 "$(jstr down_id "$PROG")"
eq "plugin's notified_at kept" 100 "$(jnum notified_at "$PROG")"
eq "no log for a failure" $((LOGS0 + 1)) "$(rcli LLEN "${P}ota:logs")"
ok "show task 2 after the reports" task show 2
has "devices_by_state" "$OUT" '"devices_by_state":{"pending":0,"notified":1,"acked":0,"succeeded":1,"failed":1,"timed_out":0}'
eq "surplus_count: d5 failed and is still at the from version" 1 "$(jnum surplus_count)"
eq "upgrade_count" 1 "$(jstr upgrade_count)"

# ==================================================================================== push
PUSH0=$(rcli XLEN "${P}commands")
ok "push to a device" task push 2 --devices d4
eq "output" "{\"stream_id\":\"$(rcli XREVRANGE "${P}commands" + - COUNT 1 | head -n 1)\",\"kind\":\"push\",\"task\":\"2\",\"devices\":[\"d4\"]}" "$OUT"
eq "commands entry" "kind push task 2 devices d4" "$(last_command)"
ok "push to every device in scope" task push 2
eq "commands entry (devices empty)" "kind push task 2 devices " "$(last_command)"
has "output devices" "$OUT" '"devices":[]'
ok "push deduplicates" task push 2 --devices d5,d4,d5
eq "commands entry" "kind push task 2 devices d5,d4" "$(last_command)"
ok "push to a device of a category-0 task" task push 1 --devices d3
eq "commands entry" "kind push task 1 devices d3" "$(last_command)"
eq "four commands" $((PUSH0 + 4)) "$(rcli XLEN "${P}commands")"
eq "oplog: push" push "$(jstr action "$(rcli LINDEX "${P}ota:oplog:1" -1)")"
refused "push a waiting task" 1 task push 3
refused "push to a device out of scope" 1 task push 2 --devices d1
refused "push to an unknown device" 1 task push 1 --devices nope
refused "push an unknown task" 1 task push 999
refused "push: bad device list" 2 task push 2 --devices 'd1,'
refused "push: missing task" 2 task push

# ==================================================================================== ask-firmware
ok "ask-firmware (lower-case Lierda id)" device ask-firmware aa30c505 20MQTTJ000121
eq "commands entry" "kind ask_firmware product AA30C505 device 20MQTTJ000121" "$(last_command)"
like "output" '^\{"stream_id":"[0-9]+-[0-9]+","kind":"ask_firmware","product":"AA30C505","device":"20MQTTJ000121"\}$' "$OUT"
refused "ask-firmware of a KRT device" 1 device ask-firmware K1 d1
refused "ask-firmware of an unknown device" 1 device ask-firmware AA30C505 NOPE1
refused "ask-firmware of an unknown product" 1 device ask-firmware 0F0F0F0F d1
refused "ask-firmware without device" 2 device ask-firmware AA30C505

# ==================================================================================== emu
ok "emu version (product key, sub-device)" emu version --product-key PK1 --device gw1 --sub-device-id 2
eq "topic" v1/wudun/PK1/gw1/ota/emu_version/command "$(jstr topic)"
like "frame" "^\\{\"topic\":\"[^\"]+\",\"payload\":\\{\"trace_id\":\"$UUID_RE\",\"mid\":\"$UUID_RE\",\"type\":\"emu_version\",\"device_uid\":\"gw1\",\"sub_device_id\":2,\"timestamp\":[0-9]{13}\\}\\}\$" "$OUT"
ne "trace_id and mid differ" "$(jstr trace_id)" "$(jstr mid)"
TSMS=$(jnum timestamp)
NOW_MS=$(( $(date +%s) * 1000 ))
CTX="emu timestamp"
if (( TSMS > NOW_MS - 60000 && TSMS < NOW_MS + 60000 )); then pass; else fail "timestamp $TSMS not now ($NOW_MS)"; fi
PAYLOAD=$(printf '%s' "$OUT" | sed 's/^{"topic":"[^"]*","payload"://; s/}$//')
eq "commands kind" publish "$(last_command_field kind)"
eq "commands topic" v1/wudun/PK1/gw1/ota/emu_version/command "$(last_command_field topic)"
eq "commands payload = the printed frame" "$PAYLOAD" "$(last_command_field payload)"
eq "commands: the gateway's product" PK1 "$(last_command_field product)"
eq "commands: the gateway" gw1 "$(last_command_field device)"
ok "emu upgrade (tenant)" emu upgrade --tenant T1 --device gw2 --url https://e.example.com/ems_II --md5 50A2811E047DD49ACE3801685EEDB732
eq "topic" v1/user/T1/gw2/ota/emu_upgrade/command "$(jstr topic)"
like "frame" "\"payload\":\\{\"trace_id\":\"$UUID_RE\",\"mid\":\"$UUID_RE\",\"type\":\"ota_upgrade\",\"device_uid\":\"gw2\",\"timestamp\":[0-9]{13},\"data\":\\{\"download_url\":\"https://e.example.com/ems_II\",\"md5_code\":\"50a2811e047dd49ace3801685eedb732\"\\}\\}\\}\$" "$OUT"
hasnt "no sub_device_id without --sub-device-id" "$OUT" sub_device_id
eq "commands topic" v1/user/T1/gw2/ota/emu_upgrade/command "$(last_command_field topic)"
eq "commands payload" "$(printf '%s' "$OUT" | sed 's/^{"topic":"[^"]*","payload"://; s/}$//')" "$(last_command_field payload)"
ok "emu upgrade-result (sub-device 0)" emu upgrade-result --tenant T1 --device gw3 --sub-device-id 0
eq "topic" v1/user/T1/gw3/ota/emu_upgrade_result/command "$(jstr topic)"
like "frame" '"type":"emu_upgrade_result","device_uid":"gw3","sub_device_id":0,"timestamp":[0-9]{13}\}\}$' "$OUT"
hasnt "no data" "$OUT" '"data"'
refused "emu: namespace mismatch" 1 emu version --tenant PK1 --device gw1
refused "emu: device of another product" 1 emu version --product-key PK1 --device gw2
refused "emu: unknown device" 1 emu version --product-key PK1 --device gw9
refused "emu: unknown product" 1 emu version --product-key PK9 --device gw1
refused "emu: a KRT product" 1 emu version --product-key K1 --device d1
refused "emu: both flags" 2 emu version --product-key PK1 --tenant T1 --device gw1
refused "emu: no product flag" 2 emu version --device gw1
refused "emu: no device" 2 emu version --product-key PK1
refused "emu upgrade: no url" 2 emu upgrade --product-key PK1 --device gw1 --md5 50A2811E047DD49ACE3801685EEDB732
refused "emu upgrade: no md5" 2 emu upgrade --product-key PK1 --device gw1 --url http://x/y
refused "emu upgrade: bad md5" 2 emu upgrade --product-key PK1 --device gw1 --url http://x/y --md5 50A2
refused "emu upgrade: bad url" 2 emu upgrade --product-key PK1 --device gw1 --url x/y --md5 50A2811E047DD49ACE3801685EEDB732
refused "emu version: --url" 2 emu version --product-key PK1 --device gw1 --url http://x/y
refused "emu: bad sub-device id" 2 emu version --product-key PK1 --device gw1 --sub-device-id -1
refused "emu show: --sub-device-id" 2 emu show --product-key PK1 --device gw1 --sub-device-id 1
ok "emu show without results" emu show --tenant T1 --device gw2
eq "empty results" '{"product":"T1","device":"gw2","results":{}}' "$OUT"
rcli HSET "${P}emu:result:PK1:gw1" 2 '{"type":"emu_upgrade_result","sub_device_id":2,"data":{"device_id":2,"status":1}}' \
  - '{"type":"emu_upgrade","data":{"device_id":1,"download_status":1}}' >/dev/null
ok "emu show" emu show --product-key PK1 --device gw1
eq "results" '{"product":"PK1","device":"gw1","results":{"-":{"type":"emu_upgrade","data":{"device_id":1,"download_status":1}},"2":{"type":"emu_upgrade_result","sub_device_id":2,"data":{"device_id":2,"status":1}}}}' "$OUT"
refused "emu show: namespace mismatch" 1 emu show --tenant PK1 --device gw1

# ==================================================================================== OTA logs (ops 8, 9), own prefix
L=(--prefix lq:)
for c in "product add krt --product-id LP" "product add krt --product-id LO" "device add krt --product-id LP --device-id a1" \
  "device add krt --product-id LP --device-id a2" "device add krt --product-id LP --device-id b1" \
  "device add krt --product-id LO --device-id o1"; do
  # shellcheck disable=SC2086
  run "${L[@]}" $c
  CTX="log fixture: $c"
  eq "exit status" 0 "$RC"
done
ok "log task X" "${L[@]}" task create --product-id LP --name X --from-version 1 --target-version 2 "${TGT[@]}"
ok "log task Y" "${L[@]}" task create --product-id LP --name Y --from-version 3 --target-version 4 "${TGT[@]}"
ok "log add" "${L[@]}" task log add --task 1 --device a1 --mac AA:01 --sn SN-001
like "entry" '^\{"id":1,"product_id":"LP","task_id":"1","device_id":"a1","device_mac":"AA:01","device_sn":"SN-001","status":1,"execute_time":"[0-9T:.-]+Z"\}$' "$OUT"
like "execute_time format" "$TIME_RE" "$(jstr execute_time)"
eq "stored" "$OUT" "$(rcli LINDEX lq:ota:logs -1)"
eq "log_seq" 1 "$(rcli GET lq:ota:log_seq)"
ok "log add 2" "${L[@]}" task log add --task 1 --device a2 --status 1 --mac AA:02 --sn SN-002
ok "log add 3" "${L[@]}" task log add --task 1 --device a1 --status 2 --mac AA:01 --sn SN-001
ok "log add 4" "${L[@]}" task log add --task 2 --device b1
ok "log add 5" "${L[@]}" task log add --task=2 --device=a2 --status=2 --sn=XSN-9
eq "five entries" 5 "$(rcli LLEN lq:ota:logs)"
refused "log add: unknown task" 1 "${L[@]}" task log add --task 9 --device a1
refused "log add: device of another product" 1 "${L[@]}" task log add --task 1 --device o1
refused "log add: unknown device" 1 "${L[@]}" task log add --task 1 --device zz
refused "log add: status 3" 2 "${L[@]}" task log add --task 1 --device a1 --status 3
refused "log add: bad mac" 2 "${L[@]}" task log add --task 1 --device a1 --mac 'zz zz'
refused "log add: missing --task" 2 "${L[@]}" task log add --device a1
refused "log add: missing --device" 2 "${L[@]}" task log add --task 1
lq() { # DESC EXPECTED_IDS ARGS...
  local desc=$1 want=$2
  shift 2
  ok "log query: $desc" "${L[@]}" task log query "$@"
  eq "log query: $desc" "$want" "$(jnums id)"
}
lq "everything" "1 2 3 4 5"
eq "count" 5 "$(jnum count)"
like "entries" '^\{"count":5,"list":\[\{"id":1,"product_id":"LP","task_id":"1","device_id":"a1","device_mac":"AA:01","device_sn":"SN-001","status":1,"execute_time":"[^"]+"\},\{"id":2,' "$OUT"
lq "paging" "2 3" --offset 1 --limit 2
eq "count before paging" 5 "$(jnum count)"
lq "default limit is 10" "1 2 3 4 5" --offset 0
lq 'status $gte 2' "3 5" --query '{"status":{"$gte":2}}'
lq 'status $gt 1' "3 5" --query '{"status":{"$gt":1}}'
lq 'status $lt 2' "1 2 4" --query '{"status":{"$lt":2}}'
lq 'status $lte "1" (string)' "1 2 4" --query '{"status":{"$lte":"1"}}'
lq 'id $lt 10 (numbers compare as numbers)' "1 2 3 4 5" --query '{"id":{"$lt":10}}'
lq 'id $gt 1 and $lt 5' "2 3 4" --query '{"id":{"$gt":1,"$lt":5}}'
lq 'id $gte "4"' "4 5" --query '{"id":{"$gte":"4"}}'
lq 'task_id $in ["2"]' "4 5" --query '{"task_id":{"$in":["2"]}}'
lq 'task_id $in [1] (a number)' "1 2 3" --query '{"task_id":{"$in":[1]}}'
lq 'device_id $in [a2,b1]' "2 4 5" --query '{"device_id":{"$in":["a2","b1"]}}'
lq 'device_id $like a%' "1 2 3 5" --query '{"device_id":{"$like":"a%"}}'
lq 'device_id $like %1' "1 3 4" --query '{"device_id":{"$like":"%1"}}'
lq 'device_id $like substring 2' "2 5" --query '{"device_id":{"$like":"2"}}'
lq 'device_sn $like sn-00% (any case)' "1 2 3" --query '{"device_sn":{"$like":"sn-00%"}}'
lq 'device_mac $eq' "1 3" --query '{"device_mac":{"$eq":"AA:01"}}'
lq 'bare value is $eq' "3" --query '{"task_id":"1","status":2}'
lq 'empty device_mac' "4 5" --query '{"device_mac":""}'
lq 'execute_time $lte far future' "1 2 3 4 5" --query '{"execute_time":{"$lte":"9999-12-31T23:59:59.99Z"}}'
lq 'execute_time $lt far past' "" --query '{"execute_time":{"$lt":"2000-01-01T00:00:00.00Z"}}'
eq "count 0" 0 "$(jnum count)"
lq 'product_id $eq' "1 2 3 4 5" --query '{"product_id":{"$eq":"LP"}}'
lq 'order device_id asc, then id desc' "3 1 5 2 4" --order '{"device_id":"asc","id":"desc"}'
lq 'order id desc, then device_id asc' "5 4 3 2 1" --order '{"id":"desc","device_id":"asc"}'
lq 'order status desc (then id)' "3 5 1 2 4" --order '{"status":"desc"}'
lq 'query, order, paging' "2 1" --query '{"status":1}' --order '{"id":"desc"}' --offset 1 --limit 2
eq "count of the query" 3 "$(jnum count)"
ok "log query --filter" "${L[@]}" task log query --filter id,device_id --limit 2
eq "only the filtered fields" '{"count":5,"list":[{"id":1,"device_id":"a1"},{"id":2,"device_id":"a2"}]}' "$OUT"
ok "log query --filter in the given order" "${L[@]}" task log query --filter status,task_id --query '{"id":4}'
eq "filtered" '{"count":1,"list":[{"status":1,"task_id":"2"}]}' "$OUT"
refused "log query: unknown filter field" 2 "${L[@]}" task log query --filter id,color
refused "log query: unknown query field" 2 "${L[@]}" task log query --query '{"color":"red"}'
refused "log query: unknown operator" 2 "${L[@]}" task log query --query '{"id":{"$ne":1}}'
refused "log query: \$in without an array" 2 "${L[@]}" task log query --query '{"id":{"$in":1}}'
refused "log query: not JSON" 2 "${L[@]}" task log query --query '{"id":'
refused "log query: bad order" 2 "${L[@]}" task log query --order '{"id":"sideways"}'
refused "log query: --limit 0" 2 "${L[@]}" task log query --limit 0
refused "log query: argument" 2 "${L[@]}" task log query extra
eq "every lq: key under its prefix" "" "$(rcli --scan --pattern 'lq:*' | grep -v '^lq:' || true)"
eq "no log went to the default prefix" "$((LOGS0 + 1))" "$(rcli LLEN "${P}ota:logs")"

# ==================================================================================== concurrency
# 20 "task log add" and 20 plugin-like HINCRBY of upgrade_count run at once with CLI edits of the same
# task (stop/start, device changes, a successful report): nothing may be lost or clobbered.
UC0=$(rcli HGET "${P}ota:task:2" upgrade_count)
LOGS1=$(rcli LLEN "${P}ota:logs")
SEQ1=$(rcli GET "${P}ota:log_seq")
mkdir -p "$TMP/jobs"
pids=()
for i in $(seq 1 20); do
  { "$CLI" task log add --task 2 --device d4 >"$TMP/jobs/log$i.out" 2>&1; echo $? >"$TMP/jobs/log$i.rc"; } &
  pids+=($!)
  { redis-cli -u "$URI" HINCRBY "${P}ota:task:2" upgrade_count 1 >/dev/null 2>&1; echo $? >"$TMP/jobs/inc$i.rc"; } &
  pids+=($!)
done
{
  rc=0
  for c in "task stop 2" "task devices 2 --add d1" "task start 2" "task devices 2 --remove d1" \
    "task report 2 --device d5 --last-version 7 --current-version 8 --result 0" "task stop 2" "task start 2" \
    "task devices 2 --replace d4,d5"; do
    # shellcheck disable=SC2086
    "$CLI" $c >/dev/null 2>>"$TMP/jobs/edits.err" || rc=1
  done
  echo $rc >"$TMP/jobs/edits.rc"
} &
pids+=($!)
for p in "${pids[@]}"; do wait "$p" || true; done
CTX=concurrency
eq "every log add succeeded" "$(rep 20 0)" "$(cat "$TMP"/jobs/log*.rc | tr -d '\n')"
eq "every HINCRBY succeeded" "$(rep 20 0)" "$(cat "$TMP"/jobs/inc*.rc | tr -d '\n')"
eq "every edit succeeded" 0 "$(cat "$TMP/jobs/edits.rc")"
eq "edits: no errors" "" "$(cat "$TMP/jobs/edits.err")"
eq "upgrade_count exact (20 plugin increments + 1 report)" $((UC0 + 21)) "$(rcli HGET "${P}ota:task:2" upgrade_count)"
eq "every log kept (20 + the report's)" $((LOGS1 + 21)) "$(rcli LLEN "${P}ota:logs")"
eq "log_seq exact" $((SEQ1 + 21)) "$(rcli GET "${P}ota:log_seq")"
eq "log ids distinct" 21 "$(rcli LRANGE "${P}ota:logs" -21 -1 | grep -o '^{"id":[0-9]*' | sort -u | wc -l | tr -d ' ')"
eq "task 2 state after the edits" '1 1 ["d4","d5"]' "$(rcli HMGET "${P}ota:task:2" status tag_type device_list | tr '\n' ' ' | sed 's/ $//')"
ok "get task 2" task get 2
eq "upgrade_count in output" $((UC0 + 21)) "$(jstr upgrade_count)"
change "an edit after the increments keeps the count" 2 task devices 2 --add d1
eq "upgrade_count still exact" $((UC0 + 21)) "$(jstr upgrade_count)"
eq "redis upgrade_count still exact" $((UC0 + 21)) "$(rcli HGET "${P}ota:task:2" upgrade_count)"

# ==================================================================================== delete (op 4)
LOGS2=$(rcli LLEN "${P}ota:logs")
change "delete task 1" 1 task delete 1
eq "output" '{"deleted":"1"}' "$OUT"
eq "task keys gone" 0 "$(rcli EXISTS "${P}ota:task:1" "${P}ota:progress:1" "${P}ota:oplog:1" "${P}ota:unique:K1:wifi:default:1.0")"
eq "not in tasks set" 0 "$(rcli SISMEMBER "${P}ota:tasks" 1)"
eq "not in the product's tasks" "" "$(rcli ZSCORE "${P}ota:tasks:K1" 1)"
eq "OTA logs stay" "$LOGS2" "$(rcli LLEN "${P}ota:logs")"
eq "versions stay" 1.0 "$(rcli HGET "${P}ota:version:K1:d1" default)"
refused "delete twice" 1 task delete 1
refused "get a deleted task" 1 task get 1
change "the combination is free again" 18 task create --product-id K1 --name again --from-version 1.0 \
  --target-version 1.1 "${TGT[@]}"
eq "unique key" 18 "$(rcli GET "${P}ota:unique:K1:wifi:default:1.0")"
refused "delete: bad id" 2 task delete x1
change "delete a test task" 2 task delete 2
eq "progress gone" 0 "$(rcli EXISTS "${P}ota:progress:2")"
change "a task of a product without devices" 19 task create --product-id KZ --name empty --from-version 1 \
  --target-version 2 "${TGT[@]}"
ok "versions of a task without devices" task versions 19
eq "versions" '{"total":0,"versions":[]}' "$OUT"
ok "show of a task without devices" task show 19
has "devices_by_state" "$OUT" '"devices_by_state":{"pending":0,"notified":0,"acked":0,"succeeded":0,"failed":0,"timed_out":0}'

# ==================================================================================== Lua is the authority
CTX="lua validation"
for args in "task_create|tester|product_id|K1|name|$(rep 33 x)|from_version|q1|target_version|q2|target_version_url|$URL|target_version_md5|$MD5|target_version_size|1" \
  "task_create|tester|product_id|K1|name|x|from_version|q1|target_version|q2|target_version_url|$URL|target_version_md5|xyz|target_version_size|1" \
  "task_create|tester|product_id|K1|name|x|from_version|q1|target_version|q2|target_version_url|$URL|target_version_md5|$MD5|target_version_size|1|tag_type|1" \
  "task_create|tester|product_id|K1|name|x|from_version|q1|target_version|q2|target_version_url|$URL|target_version_md5|$MD5|target_version_size|1|color|red" \
  "task_create|bad op|product_id|K1|name|x|from_version|q1|target_version|q2|target_version_url|$URL|target_version_md5|$MD5|target_version_size|1" \
  "task_set_status|tester|3|launch" "task_set_status|tester|3|start" "task_review|mallory|3|approve" \
  "task_devices|tester|17|remove|d1,d2,d3" "task_submit|tester|17|bob" "task_log_query|0|10||{bad|" \
  "emu_command|wudun|PK1|gw1|emu_version||not-a-uuid|not-a-uuid||" "task_push|tester|3|" \
  "task_to_production|tester|3|name|x" "task_log_add|tester|3|d1|7||"; do
  IFS='|' read -r -a lua_args <<<"$args"
  before=$(digest)
  lua "${lua_args[@]}"
  if [[ $OUT != '{'* && $OUT != '['* && -n $OUT ]]; then pass; else fail "Lua accepted ${lua_args[*]:0:6}: ${OUT:0:200}"; fi
  eq "Lua refusal changes nothing (${lua_args[0]})" "$before" "$(digest)"
done

# ==================================================================================== deleting what tasks hang on
CTX="delete cascades"
ok "product to delete" product add lierda --openid 0000DEAD --product-id DE1E7E00 --auth-type 1
ok "its device" device add lierda --product-id DE1E7E00 --node-eui DELDEV01
ok "its second device" device add lierda --product-id DE1E7E00 --node-eui DELDEV02
ok "its task" task create --product-id DE1E7E00 --name doomed --from-version 1 --target-version 2 \
  --target-url "$URL" --target-md5 "$MD5" --target-size 1
DEL_TASK=$(jstr id)
rcli HSET "${P}ota:version:DE1E7E00:DELDEV01" default 1 >/dev/null
rcli HSET "${P}ota:version:DE1E7E00:DELDEV02" default 1 >/dev/null
rcli HSET "${P}ota:progress:$DEL_TASK" DELDEV01 '{"state":"notified"}' >/dev/null
rcli SADD "${P}ota:pushed:$DEL_TASK" DELDEV01 >/dev/null
ok "device delete" device delete DE1E7E00 DELDEV02
eq "device delete drops the device's versions" 0 "$(rcli EXISTS "${P}ota:version:DE1E7E00:DELDEV02")"
ok "product delete" product delete DE1E7E00
for k in "ota:task:$DEL_TASK" "ota:progress:$DEL_TASK" "ota:pushed:$DEL_TASK" "ota:oplog:$DEL_TASK" \
  "ota:tasks:DE1E7E00" "ota:unique:DE1E7E00:wifi:default:1" "ota:version:DE1E7E00:DELDEV01"; do
  eq "product delete removes $k" 0 "$(rcli EXISTS "$P$k")"
done
eq "product delete removes the task from the task set" 0 "$(rcli SISMEMBER "${P}ota:tasks" "$DEL_TASK")"
like "product delete announces the task's removal" "kind task id $DEL_TASK" "$(rcli XREVRANGE "${P}changes" + - COUNT 3 | tr '\n' ' ')"

# ==================================================================================== keys
CTX=keys
eq "no key outside the prefixes" "" "$(rcli --scan | grep -v -e "^$P" -e '^lq:' || true)"
eq "OTA keys of the default prefix" "" "$(rcli --scan --pattern "${P}ota:*" | sed "s/^${P}ota://" |
  grep -v -E '^(task_seq|tasks|tasks:[A-Za-z0-9_-]+|task_names:[A-Za-z0-9_-]+|task_names_ci:[A-Za-z0-9_-]+|task:[0-9]+|unique:.+|progress:[0-9]+|pushed:[0-9]+|version:[^:]+:[^:]+|logs|log_seq|oplog:[0-9]+)$' || true)"

# ==================================================================================== summary
echo "$PASS passed, $FAIL failed"
(( FAIL == 0 ))
