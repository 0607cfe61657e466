#!/usr/bin/env bash
# Test of the admin CLI scripts/iotgate (and its Lua scripts) against a private redis-server.
# Run: bash tests/cli/cli_test.sh   (from any directory; CTest runs it as the "cli" test)
# Prints failures on stderr and ends with one line "N passed, M failed"; exits 1 if M > 0.
# shellcheck disable=SC2016 # many literal $ (hashes, secrets) in single quotes
set -euo pipefail
export LC_ALL=C

TEST_NAME=cli_test
REQUIRED_TOOLS=(mosquitto_passwd openssl base64)
# shellcheck source=tests/cli/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

URI1=redis://127.0.0.1:$PORT/1
unset IOTGATE_PREFIX IOTGATE_LUA_DIR

CUR_URI=$URI
rcli() { redis-cli -u "$CUR_URI" --raw "$@"; }
rcli1() { redis-cli -u "$URI1" --raw "$@"; }

# the JSON value of string field KEY in OUT (or in $2)
jget() { printf '%s\n' "${2-$OUT}" | sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }

# change DESC KIND ID ARGS...: like ok, and the changes stream grew by exactly one KIND/ID entry
change() {
  local desc=$1 kind=$2 id=$3
  shift 3
  local before after
  before=$(xlen)
  ok "$desc" "$@"
  # one redis-cli: XLEN, the newest entry (id and 4 field lines), the schema version
  after=$(printf 'XLEN %s\nXREVRANGE %s + - COUNT 1\nGET %s\n' "${P}changes" "${P}changes" "${P}schema" |
    rcli | tr '\n' ' ' | sed 's/ $//')
  like "changes grew by one, last change kind $kind id $id, schema 1" \
    "^$((before + 1)) [0-9]+-[0-9]+ kind $kind id ${id//./\\.} 1\$" "$after"
}

# refuse DESC ARGS...: non-zero exit, one "iotgate: " line on stderr, no stdout, Redis unchanged
refuse() {
  local desc=$1
  shift
  local before
  before=$(digest)
  run "$@"
  CTX=$desc
  ne "exit status" 0 "$RC"
  eq "stdout" "" "$OUT"
  eq "one line of stderr" 1 "$(lines "$ERR")"
  like "stderr message" '^iotgate: .+' "$ERR"
  eq "Redis unchanged" "$before" "$(digest)"
}

# verify_hash HASH SECRET: HASH is the mosquitto $7$ PBKDF2-SHA512 hash of SECRET
verify_hash() {
  local iter salt hash salthex want got
  IFS='$' read -r _ _ iter salt hash <<<"$1"
  salthex=$(printf '%s' "$salt" | base64 -d | od -An -v -tx1 | tr -d ' \n')
  want=$(printf '%s' "$hash" | base64 -d | od -An -v -tx1 | tr -d ' \n')
  got=$(openssl kdf -keylen 64 -kdfopt digest:SHA512 -kdfopt "pass:$2" -kdfopt "hexsalt:$salthex" \
    -kdfopt "iter:$iter" PBKDF2 | tr -d ':\n' | tr A-F a-f)
  [[ -n $want && $got == "$want" ]]
}

HEX32='^[0-9A-F]{32}$'
HASH7='^\$7\$[0-9]+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$'

# golden values
OID=7ED01E2A PID=AA30C505 EUI=20MQTTJ000121
PKEY=DB6FACEF35BEBA0517712F0E4BE32936 DSEC=326086233FAB8A96566796551EB1DFF8 TS=1675404867
PW0=5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F05876680DBB4A7CB546B1EE27FF10134B
PW1=5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F0725CDE013D77D74F22A59C33F8FE51622BE8CFAD9396E7811545F61CEDA9E4F9

# ==================================================================================== help
helps --help
helps -h
helps help
for c in "product add lierda" "product add krt" "product add emu" "product show" "product list" \
  "product enable" "product disable" "product delete" "device add lierda" "device add krt" \
  "device add emu" "device show" "device list" "device enable" "device disable" "device delete" \
  "account add" "account show" "account delete" "account list" "creds lierda" "creds krt" "creds emu"; do
  CTX="main help"
  has "main help lists '$c'" "$OUT" "$c"
done
for opt in --openid --product-id --product-key --auth-type --encrypted --product-secret --dynamic-register \
  --auto-create --limit --tenant --show-secrets --node-eui --secret --device-id --device --show-secret \
  --password --password-hash --superuser --allow --type --timestamp --redis --prefix; do
  has "main help mentions $opt" "$OUT" "$opt"
done
for args in "product" "product add" "product add lierda" "product add krt" "product add emu" "product show" \
  "product list" "product enable" "product disable" "product delete" "device" "device add" "device add lierda" \
  "device add krt" "device add emu" "device show" "device list" "device enable" "device disable" \
  "device delete" "account" "account add" "account show" "account delete" "account list" "creds" \
  "creds lierda" "creds krt" "creds emu"; do
  # shellcheck disable=SC2086
  helps $args --help
  # shellcheck disable=SC2086
  helps $args -h
done
helps product show X --help
helps device show X Y -h
helps --redis "$URI" --prefix x: product add lierda --openid 1 --help

# ==================================================================================== general errors
CTX=general
refuse "no command"
refuse "unknown command" frobnicate
refuse "unknown global option" --bogus product list
refuse "unknown product subcommand" product frob
refuse "unknown device subcommand" device frob
refuse "unknown account subcommand" account frob
refuse "unknown protocol" product add mqtt --product-id X
refuse "unknown device protocol" device add mqtt
refuse "unknown creds protocol" creds mqtt
refuse "unknown option" product list --bogus
refuse "extra argument" product list extra
refuse "missing argument" product show
refuse "missing device argument" device show X
refuse "option without value" product add krt --product-id
refuse "empty prefix" --prefix '' product list
run --redis "$DEAD_URI" product list
CTX="unreachable redis (--redis)"
ne "exit status" 0 "$RC"
eq "one line of stderr" 1 "$(lines "$ERR")"
like "stderr message" '^iotgate: .+' "$ERR"
eq "stdout" "" "$OUT"
IOTGATE_REDIS=$DEAD_URI run product list
CTX="unreachable redis (IOTGATE_REDIS)"
ne "exit status" 0 "$RC"
eq "one line of stderr" 1 "$(lines "$ERR")"
like "stderr message" "^iotgate: .+" "$ERR"
IOTGATE_REDIS=$DEAD_URI run --redis "$URI" product list
CTX="--redis overrides IOTGATE_REDIS"
eq "exit status" 0 "$RC"
eq "empty list" "[]" "$OUT"
ok "empty product list" product list
eq "empty list is []" "[]" "$OUT"
ok "empty account list" account list
eq "empty list is []" "[]" "$OUT"

# ==================================================================================== products: lierda
change "product add lierda (given key, lower-case input)" product "$PID" \
  product add lierda --openid 7ed01e2a --product-id aa30c505 --product-key "${PKEY,,}" --auth-type 2
has "id" "$OUT" "\"id\":\"$PID\""
has "protocol" "$OUT" '"protocol":"lierda"'
has "openid upper-case" "$OUT" "\"openid\":\"$OID\""
has "product_key shown once" "$OUT" "\"product_key\":\"$PKEY\""
has "auth_type" "$OUT" '"auth_type":"2"'
has "encrypted" "$OUT" '"encrypted":"0"'
has "enabled" "$OUT" '"enabled":"1"'
like "created_at" '"created_at":"[0-9]+"' "$OUT"
eq "redis protocol" lierda "$(rcli HGET "${P}product:$PID" protocol)"
eq "redis openid" "$OID" "$(rcli HGET "${P}product:$PID" openid)"
eq "redis product_key" "$PKEY" "$(rcli HGET "${P}product:$PID" product_key)"
eq "redis auth_type" 2 "$(rcli HGET "${P}product:$PID" auth_type)"
eq "redis encrypted" 0 "$(rcli HGET "${P}product:$PID" encrypted)"
eq "redis enabled" 1 "$(rcli HGET "${P}product:$PID" enabled)"
like "redis created_at" '^[0-9]{10}$' "$(rcli HGET "${P}product:$PID" created_at)"
eq "redis created_at = output" "$(jget created_at)" "$(rcli HGET "${P}product:$PID" created_at)"
eq "in products set" 1 "$(rcli SISMEMBER "${P}products" "$PID")"

change "product add lierda (generated key, encrypted)" product 0A0B0C0D \
  product add lierda --openid 0000ABCD --product-id 0a0b0c0d --auth-type 0 --encrypted
KEY2=$(jget product_key)
like "generated ProductKey" "$HEX32" "$KEY2"
eq "redis product_key" "$KEY2" "$(rcli HGET "${P}product:0A0B0C0D" product_key)"
eq "redis encrypted" 1 "$(rcli HGET "${P}product:0A0B0C0D" encrypted)"
eq "redis auth_type" 0 "$(rcli HGET "${P}product:0A0B0C0D" auth_type)"
change "product add lierda (auth type 1, --opt=value form)" product 11111111 \
  product add lierda --openid=0000ABCD --product-id=11111111 --auth-type=1
eq "redis auth_type" 1 "$(rcli HGET "${P}product:11111111" auth_type)"

refuse "duplicate lierda product" product add lierda --openid "$OID" --product-id "$PID" --auth-type 2
refuse "duplicate lierda product (lower-case)" product add lierda --openid "$OID" --product-id aa30c505 --auth-type 0
refuse "missing --auth-type" product add lierda --openid "$OID" --product-id 22222222
refuse "bad --auth-type" product add lierda --openid "$OID" --product-id 22222222 --auth-type 3
refuse "missing --openid" product add lierda --product-id 22222222 --auth-type 0
refuse "short openid" product add lierda --openid 7ED01E2 --product-id 22222222 --auth-type 0
refuse "non-hex openid" product add lierda --openid 7ED01E2G --product-id 22222222 --auth-type 0
refuse "long ProductID" product add lierda --openid "$OID" --product-id 222222222 --auth-type 0
refuse "ProductID with +" product add lierda --openid "$OID" --product-id 2222222+ --auth-type 0
refuse "short ProductKey" product add lierda --openid "$OID" --product-id 22222222 --auth-type 0 --product-key "${PKEY:1}"
refuse "non-hex ProductKey" product add lierda --openid "$OID" --product-id 22222222 --auth-type 0 --product-key "${PKEY:1}X"
refuse "unknown lierda option" product add lierda --openid "$OID" --product-id 22222222 --auth-type 0 --bogus

# ==================================================================================== products: krt
change "product add krt (all flags)" product K1 \
  product add krt --product-id K1 --product-secret 'Pr0duct!Secret' --dynamic-register --auto-create --limit 5
has "id" "$OUT" '"id":"K1"'
has "protocol" "$OUT" '"protocol":"krt"'
has "product_secret shown once" "$OUT" '"product_secret":"Pr0duct!Secret"'
has "dynamic_register" "$OUT" '"dynamic_register":"1"'
has "auto_create" "$OUT" '"auto_create":"1"'
has "limit" "$OUT" '"limit":"5"'
has "enabled" "$OUT" '"enabled":"1"'
eq "redis product_secret" 'Pr0duct!Secret' "$(rcli HGET "${P}product:K1" product_secret)"
eq "redis dynamic_register" 1 "$(rcli HGET "${P}product:K1" dynamic_register)"
eq "redis auto_create" 1 "$(rcli HGET "${P}product:K1" auto_create)"
eq "redis limit" 5 "$(rcli HGET "${P}product:K1" limit)"
eq "redis protocol" krt "$(rcli HGET "${P}product:K1" protocol)"
change "product add krt (defaults)" product k-2_b product add krt --product-id k-2_b
KSEC=$(jget product_secret)
like "generated ProductSecret" "$HEX32" "$KSEC"
eq "redis product_secret" "$KSEC" "$(rcli HGET "${P}product:k-2_b" product_secret)"
eq "redis dynamic_register default" 0 "$(rcli HGET "${P}product:k-2_b" dynamic_register)"
eq "redis auto_create default" 0 "$(rcli HGET "${P}product:k-2_b" auto_create)"
eq "redis limit default" 1000 "$(rcli HGET "${P}product:k-2_b" limit)"
change "product add krt with a hex-looking id" product ABCDEF12 product add krt --product-id ABCDEF12

refuse "duplicate krt product" product add krt --product-id K1
refuse "krt id taken by a lierda product" product add krt --product-id "$PID"
refuse "--limit 0" product add krt --product-id K9 --limit 0
refuse "--limit negative" product add krt --product-id K9 --limit -3
refuse "--limit not a number" product add krt --product-id K9 --limit abc
refuse "--limit 1e3" product add krt --product-id K9 --limit 1e3
refuse "KRT ProductID with ." product add krt --product-id a.b
refuse "KRT ProductID with +" product add krt --product-id 'a+b'
refuse "KRT ProductID with #" product add krt --product-id 'a#'
refuse "KRT ProductID with /" product add krt --product-id 'a/b'
refuse "KRT ProductID with :" product add krt --product-id 'a:b'
refuse "KRT ProductID with space" product add krt --product-id 'a b'
refuse "KRT ProductID too long" product add krt --product-id "$(printf 'k%.0s' $(seq 1 65))"
refuse "short ProductSecret" product add krt --product-id K9 --product-secret short
refuse "ProductSecret with space" product add krt --product-id K9 --product-secret 'has a space'
refuse "missing --product-id" product add krt --dynamic-register
change "KRT ProductID of 64 characters" product "$(printf 'k%.0s' $(seq 1 64))" \
  product add krt --product-id "$(printf 'k%.0s' $(seq 1 64))"
change "product delete (64 characters)" product "$(printf 'k%.0s' $(seq 1 64))" \
  product delete "$(printf 'k%.0s' $(seq 1 64))"

# ==================================================================================== products: emu
change "product add emu --product-key" product PK1 product add emu --product-key PK1
has "id" "$OUT" '"id":"PK1"'
has "protocol" "$OUT" '"protocol":"emu"'
has "namespace" "$OUT" '"namespace":"wudun"'
eq "redis namespace" wudun "$(rcli HGET "${P}product:PK1" namespace)"
eq "redis protocol" emu "$(rcli HGET "${P}product:PK1" protocol)"
change "product add emu --tenant" product T1 product add emu --tenant T1
has "namespace" "$OUT" '"namespace":"user"'
eq "redis namespace" user "$(rcli HGET "${P}product:T1" namespace)"
refuse "emu both flags" product add emu --product-key X1 --tenant X2
refuse "emu no flag" product add emu
refuse "emu id taken (lierda)" product add emu --product-key "$PID"
refuse "emu id taken (krt)" product add emu --tenant K1
refuse "emu id taken (emu)" product add emu --tenant PK1
refuse "emu product key with +" product add emu --product-key '+'
refuse "emu product key with #" product add emu --product-key '#'
refuse "emu tenant with /" product add emu --tenant 'a/b'

# ==================================================================================== products: show/list/state
ok "product show lierda" product show "$PID"
has "id" "$OUT" "\"id\":\"$PID\""
hasnt "no product_key without --show-secrets" "$OUT" product_key
has "device_count" "$OUT" '"device_count":0'
has "openid" "$OUT" "\"openid\":\"$OID\""
ok "product show lierda (lower-case id)" product show aa30c505
has "id" "$OUT" "\"id\":\"$PID\""
ok "product show --show-secrets" product show "$PID" --show-secrets
has "product_key" "$OUT" "\"product_key\":\"$PKEY\""
ok "product show krt" product show K1
hasnt "no product_secret" "$OUT" product_secret
has "limit" "$OUT" '"limit":"5"'
ok "product show krt --show-secrets" product show --show-secrets K1
has "product_secret" "$OUT" '"product_secret":"Pr0duct!Secret"'
ok "product show emu" product show T1
has "namespace" "$OUT" '"namespace":"user"'
refuse "product show unknown" product show NOPE
refuse "product show bad id" product show 'a/b'

ok "product list" product list
eq "product list order" "0A0B0C0D 11111111 $PID ABCDEF12 K1 PK1 T1 k-2_b" \
  "$(printf '%s' "$OUT" | grep -o '"id":"[^"]*"' | sed 's/"id":"//; s/"$//' | tr '\n' ' ' | sed 's/ $//')"
hasnt "no secrets in list" "$OUT" product_key
hasnt "no secrets in list" "$OUT" product_secret
has "device_count in list" "$OUT" '"device_count":0'

change "product disable" product K1 product disable K1
has "enabled 0" "$OUT" '"enabled":"0"'
hasnt "no secret" "$OUT" product_secret
eq "redis enabled" 0 "$(rcli HGET "${P}product:K1" enabled)"
change "product enable" product K1 product enable K1
has "enabled 1" "$OUT" '"enabled":"1"'
eq "redis enabled" 1 "$(rcli HGET "${P}product:K1" enabled)"
change "product disable lierda (lower-case id)" product "$PID" product disable aa30c505
eq "redis enabled" 0 "$(rcli HGET "${P}product:$PID" enabled)"
change "product enable lierda" product "$PID" product enable "$PID"
refuse "product enable unknown" product enable NOPE
refuse "product disable unknown" product disable NOPE
refuse "product delete unknown" product delete NOPE
refuse "product enable bad id" product enable 'a#'

# ==================================================================================== devices: lierda
change "device add lierda (given secret)" device "$PID:$EUI" \
  device add lierda --product-id aa30c505 --node-eui "$EUI" --secret "${DSEC,,}"
has "product" "$OUT" "\"product\":\"$PID\""
has "device" "$OUT" "\"device\":\"$EUI\""
has "protocol" "$OUT" '"protocol":"lierda"'
has "secret upper-case" "$OUT" "\"secret\":\"$DSEC\""
has "origin" "$OUT" '"origin":"cli"'
has "enabled" "$OUT" '"enabled":"1"'
like "created_at" '"created_at":"[0-9]+"' "$OUT"
eq "redis secret" "$DSEC" "$(rcli HGET "${P}device:$PID:$EUI" secret)"
eq "redis enabled" 1 "$(rcli HGET "${P}device:$PID:$EUI" enabled)"
eq "redis origin" cli "$(rcli HGET "${P}device:$PID:$EUI" origin)"
like "redis created_at" '^[0-9]{10}$' "$(rcli HGET "${P}device:$PID:$EUI" created_at)"
eq "in devices set" 1 "$(rcli SISMEMBER "${P}devices:$PID" "$EUI")"
change "device add lierda (generated secret)" device "$PID:abcd" \
  device add lierda --product-id "$PID" --node-eui abcd
LSEC=$(jget secret)
like "generated DeviceSecret" "$HEX32" "$LSEC"
eq "redis secret" "$LSEC" "$(rcli HGET "${P}device:$PID:abcd" secret)"
change "device add lierda (32-character NodeEui)" device "$PID:$(printf 'E%.0s' $(seq 1 32))" \
  device add lierda --product-id "$PID" --node-eui "$(printf 'E%.0s' $(seq 1 32))"

refuse "duplicate lierda device" device add lierda --product-id "$PID" --node-eui "$EUI"
refuse "NodeEui too short" device add lierda --product-id "$PID" --node-eui abc
refuse "NodeEui too long" device add lierda --product-id "$PID" --node-eui "$(printf 'E%.0s' $(seq 1 33))"
refuse "NodeEui with +" device add lierda --product-id "$PID" --node-eui 'abcd+'
refuse "NodeEui with #" device add lierda --product-id "$PID" --node-eui 'abcd#'
refuse "NodeEui with /" device add lierda --product-id "$PID" --node-eui 'ab/cd'
refuse "NodeEui with _" device add lierda --product-id "$PID" --node-eui 'ab_cd'
refuse "short DeviceSecret" device add lierda --product-id "$PID" --node-eui NEW1 --secret "${DSEC:1}"
refuse "non-hex DeviceSecret" device add lierda --product-id "$PID" --node-eui NEW1 --secret "${DSEC:1}Z"
refuse "unknown lierda product" device add lierda --product-id 0F0F0F0F --node-eui NEW1
refuse "lierda device in a krt product" device add lierda --product-id ABCDEF12 --node-eui NEW1
refuse "missing --node-eui" device add lierda --product-id "$PID"
refuse "bad lierda ProductID" device add lierda --product-id K1 --node-eui NEW1

# ==================================================================================== devices: krt
change "device add krt (given secret)" device "K1:d-2" \
  device add krt --product-id K1 --device-id d-2 --secret 'Dev!ce_Secret'
has "secret" "$OUT" '"secret":"Dev!ce_Secret"'
has "protocol" "$OUT" '"protocol":"krt"'
has "activated" "$OUT" '"activated":"0"'
has "origin" "$OUT" '"origin":"cli"'
eq "redis secret" 'Dev!ce_Secret' "$(rcli HGET "${P}device:K1:d-2" secret)"
eq "redis activated" 0 "$(rcli HGET "${P}device:K1:d-2" activated)"
eq "redis enabled" 1 "$(rcli HGET "${P}device:K1:d-2" enabled)"
change "device add krt (generated secret)" device "K1:d1" device add krt --product-id K1 --device-id d1
KDSEC=$(jget secret)
like "generated DeviceSecret" "$HEX32" "$KDSEC"
eq "redis secret" "$KDSEC" "$(rcli HGET "${P}device:K1:d1" secret)"
eq "devices set" "d-2 d1" "$(rcli SMEMBERS "${P}devices:K1" | sort | tr '\n' ' ' | sed 's/ $//')"
refuse "duplicate krt device" device add krt --product-id K1 --device-id d1
refuse "krt DeviceID with +" device add krt --product-id K1 --device-id 'd+'
refuse "krt DeviceID with #" device add krt --product-id K1 --device-id '#'
refuse "krt DeviceID with /" device add krt --product-id K1 --device-id 'd/1'
refuse "krt DeviceID with ." device add krt --product-id K1 --device-id 'd.1'
refuse "krt DeviceID too long" device add krt --product-id K1 --device-id "$(printf 'd%.0s' $(seq 1 65))"
refuse "krt secret too short" device add krt --product-id K1 --device-id d9 --secret 1234567
refuse "krt secret with space" device add krt --product-id K1 --device-id d9 --secret '1234 5678'
refuse "unknown krt product" device add krt --product-id NOPE --device-id d9
refuse "krt device in a lierda product" device add krt --product-id "$PID" --device-id d9
refuse "krt device in an emu product" device add krt --product-id PK1 --device-id d9
refuse "missing --device-id" device add krt --product-id K1

# ==================================================================================== accounts (1)
change "account add svc (before the EMU tests)" account svc account add svc --password 'svc-pass'

# ==================================================================================== devices: emu
ESEC='Gw$ecret"with\quote&/x'
change "device add emu --product-key (given secret)" device "PK1:gw1" \
  device add emu --product-key PK1 --device gw1 --secret "$ESEC"
has "product" "$OUT" '"product":"PK1"'
has "device" "$OUT" '"device":"gw1"'
has "protocol" "$OUT" '"protocol":"emu"'
has "plaintext secret shown (JSON-escaped)" "$OUT" '"secret":"Gw$ecret\"with\\quote&/x"'
hasnt "no hash in output" "$OUT" secret_hash
has "origin" "$OUT" '"origin":"cli"'
GWHASH=$(rcli HGET "${P}device:PK1:gw1" secret_hash)
like "redis secret_hash is \$7\$" "$HASH7" "$GWHASH"
CTX="emu hash"
if verify_hash "$GWHASH" "$ESEC"; then pass; else fail "secret_hash is not the PBKDF2-SHA512 of the secret"; fi
eq "no plaintext secret in redis" "" "$(rcli HGET "${P}device:PK1:gw1" secret)"
eq "redis emu_uid" PK1 "$(rcli GET "${P}emu_uid:gw1")"
eq "redis enabled" 1 "$(rcli HGET "${P}device:PK1:gw1" enabled)"
eq "in devices set" 1 "$(rcli SISMEMBER "${P}devices:PK1" gw1)"
change "device add emu --tenant (generated secret)" device "T1:gw2" device add emu --tenant T1 --device gw2
GSEC=$(jget secret)
like "generated secret" "$HEX32" "$GSEC"
CTX="emu hash (generated)"
if verify_hash "$(rcli HGET "${P}device:T1:gw2" secret_hash)" "$GSEC"; then pass; else fail "secret_hash mismatch"; fi
eq "redis emu_uid" T1 "$(rcli GET "${P}emu_uid:gw2")"
change "device add emu gw0" device "PK1:gw0" device add emu --product-key PK1 --device gw0

refuse "emu namespace mismatch (--tenant for a wudun product)" device add emu --tenant PK1 --device gw9
refuse "emu namespace mismatch (--product-key for a user product)" device add emu --product-key T1 --device gw9
refuse "emu uid used in another product" device add emu --tenant T1 --device gw1
refuse "duplicate emu device" device add emu --product-key PK1 --device gw1
refuse "emu uid is an account name" device add emu --product-key PK1 --device svc
refuse "emu device in a krt product" device add emu --product-key K1 --device gw9
refuse "unknown emu product" device add emu --product-key NOPE --device gw9
refuse "emu uid with +" device add emu --product-key PK1 --device 'gw+'
refuse "emu uid with /" device add emu --product-key PK1 --device 'g/w'
refuse "emu uid with @" device add emu --product-key PK1 --device 'g@w'
refuse "emu secret too short" device add emu --product-key PK1 --device gw9 --secret short
refuse "emu missing --device" device add emu --product-key PK1
refuse "emu both flags" device add emu --product-key PK1 --tenant T1 --device gw9
refuse "emu no product flag" device add emu --device gw9
run device add emu --product-key PK1 --device 'bad/uid' --secret 'TopSecret-XYZ-123'
CTX="secret never on stderr"
hasnt "stderr" "$ERR" 'TopSecret-XYZ-123'

# ==================================================================================== devices: show/list/state
ok "device show lierda" device show "$PID" "$EUI"
has "product" "$OUT" "\"product\":\"$PID\""
has "device" "$OUT" "\"device\":\"$EUI\""
has "protocol" "$OUT" '"protocol":"lierda"'
hasnt "no secret without --show-secret" "$OUT" '"secret"'
ok "device show --show-secret" device show "$PID" "$EUI" --show-secret
has "secret" "$OUT" "\"secret\":\"$DSEC\""
rcli HSET "${P}device:$PID:$EUI" session_id 4655434B nonce 128 session_key 3F81A97DDA9B30089BB31CE21826E745 >/dev/null
ok "device show (session key hidden)" device show "$PID" "$EUI"
hasnt "no session_key" "$OUT" session_key
has "session_id" "$OUT" '"session_id":"4655434B"'
ok "device show --show-secret (session key)" device show --show-secret "$PID" "$EUI"
has "session_key" "$OUT" '"session_key":"3F81A97DDA9B30089BB31CE21826E745"'
ok "device show krt" device show K1 d-2
has "activated" "$OUT" '"activated":"0"'
# login / logout times: the plugin writes them to per-product hashes; older data kept them in the device hash
rcli HSET "${P}device:K1:d-2" last_online 100 last_offline 900 >/dev/null
rcli HSET "${P}last_online:K1" d-2 500 >/dev/null
rcli HSET "${P}last_offline:K1" d-2 200 >/dev/null
ok "device show krt (times)" device show K1 d-2
has "last_online from the times hash" "$OUT" '"last_online":"500"'
has "last_offline from the device hash (later)" "$OUT" '"last_offline":"900"'
hasnt "no secret" "$OUT" '"secret"'
ok "device show emu --show-secret" device show PK1 gw1 --show-secret
hasnt "never secret_hash" "$OUT" secret_hash
hasnt "never the hash" "$OUT" "$GWHASH"
has "protocol" "$OUT" '"protocol":"emu"'
refuse "device show unknown device" device show K1 nope
refuse "device show unknown product" device show NOPE d1
refuse "device show bad id" device show K1 'd#'

ok "device list" device list K1
eq "device list order" "d-2 d1" \
  "$(printf '%s' "$OUT" | grep -o '"device":"[^"]*"' | sed 's/"device":"//; s/"$//' | tr '\n' ' ' | sed 's/ $//')"
hasnt "no secrets in device list" "$OUT" '"secret"'
ok "device list emu" device list PK1
eq "device list order" "gw0 gw1" \
  "$(printf '%s' "$OUT" | grep -o '"device":"[^"]*"' | sed 's/"device":"//; s/"$//' | tr '\n' ' ' | sed 's/ $//')"
hasnt "no hash in device list" "$OUT" secret_hash
ok "device list of a product without devices" device list k-2_b
eq "empty device list" "[]" "$OUT"
refuse "device list unknown product" device list NOPE

ok "product show device_count" product show K1
has "device_count" "$OUT" '"device_count":2'

change "device disable" device "K1:d1" device disable K1 d1
has "enabled 0" "$OUT" '"enabled":"0"'
hasnt "no secret" "$OUT" '"secret"'
eq "redis enabled" 0 "$(rcli HGET "${P}device:K1:d1" enabled)"
change "device enable" device "K1:d1" device enable K1 d1
has "enabled 1" "$OUT" '"enabled":"1"'
eq "redis enabled" 1 "$(rcli HGET "${P}device:K1:d1" enabled)"
refuse "device enable unknown" device enable K1 nope
refuse "device disable unknown" device disable NOPE d1
refuse "device delete unknown" device delete K1 nope

change "device delete emu" device "PK1:gw0" device delete PK1 gw0
eq "output" '{"deleted":"PK1:gw0"}' "$OUT"
eq "device hash gone" 0 "$(rcli EXISTS "${P}device:PK1:gw0")"
eq "emu_uid gone" 0 "$(rcli EXISTS "${P}emu_uid:gw0")"
eq "not in devices set" 0 "$(rcli SISMEMBER "${P}devices:PK1" gw0)"
change "device delete krt" device "K1:d-2" device delete K1 d-2
eq "device hash gone" 0 "$(rcli EXISTS "${P}device:K1:d-2")"
eq "not in devices set" 0 "$(rcli SISMEMBER "${P}devices:K1" d-2)"
eq "login time gone" 0 "$(rcli HEXISTS "${P}last_online:K1" d-2)"
eq "logout time gone" 0 "$(rcli HEXISTS "${P}last_offline:K1" d-2)"
change "device delete lierda" device "$PID:abcd" device delete "$PID" abcd
eq "device hash gone" 0 "$(rcli EXISTS "${P}device:$PID:abcd")"

# ==================================================================================== accounts
RULES_IN=('read a/+/b' 'readwrite c/#' 'write %u/x' 'read #' 'read +' 'write a b/c')
change "account add with rules" account alice account add alice --password 'al1ce pass' \
  --allow "${RULES_IN[0]}" --allow "${RULES_IN[1]}" --allow "${RULES_IN[2]}" \
  --allow "${RULES_IN[3]}" --allow "${RULES_IN[4]}" --allow "${RULES_IN[5]}"
CREATED=$(rcli HGET "${P}account:alice" created_at)
RULES_JSON='["read a/+/b","readwrite c/#","write %u/x","read #","read +","write a b/c"]'
eq "account output" "{\"name\":\"alice\",\"superuser\":\"0\",\"rules\":$RULES_JSON,\"created_at\":\"$CREATED\"}" "$OUT"
hasnt "no hash in output" "$OUT" password_hash
eq "redis rules" "$RULES_JSON" "$(rcli HGET "${P}account:alice" rules)"
eq "redis superuser" 0 "$(rcli HGET "${P}account:alice" superuser)"
like "redis created_at" '^[0-9]{10}$' "$CREATED"
AHASH=$(rcli HGET "${P}account:alice" password_hash)
like "redis password_hash" "$HASH7" "$AHASH"
CTX="account hash"
if verify_hash "$AHASH" 'al1ce pass'; then pass; else fail "password_hash is not the hash of the password"; fi
eq "in accounts set" 1 "$(rcli SISMEMBER "${P}accounts" alice)"

GIVEN_HASH='$7$101$r3aOcRZYj1LlgB2U$agHQJC0wn/dx2px382TOhP79P/2gAYGD9HABT2QBoOHxa4k7i2mwPmzL1Xo0KGTf7TEaleQaC4VLp1KYufEgsQ=='
change "account add --password-hash --superuser" account "root.op@x" \
  account add "root.op@x" --password-hash "$GIVEN_HASH" --superuser
has "superuser" "$OUT" '"superuser":"1"'
has "no rules" "$OUT" '"rules":[]'
eq "redis password_hash" "$GIVEN_HASH" "$(rcli HGET "${P}account:root.op@x" password_hash)"
eq "redis rules empty" "[]" "$(rcli HGET "${P}account:root.op@x" rules)"
eq "redis superuser" 1 "$(rcli HGET "${P}account:root.op@x" superuser)"

refuse "duplicate account" account add alice --password x
refuse "account name is an EMU uid" account add gw1 --password x
refuse "account name with space" account add 'a b' --password x
refuse "account name with :" account add 'a:b' --password x
refuse "account name with /" account add 'a/b' --password x
refuse "account name with +" account add 'a+b' --password x
refuse "account name too long" account add "$(printf 'a%.0s' $(seq 1 65))" --password x
refuse "both password options" account add bob --password x --password-hash "$GIVEN_HASH"
refuse "no password option" account add bob
refuse "empty password" account add bob --password ''
refuse "bad hash" account add bob --password-hash '$6$abc$def'
refuse "bad hash (no salt)" account add bob --password-hash '$7$101$$abc'
refuse "missing name" account add --password x
refuse "rule without filter" account add bob --password x --allow read
refuse "rule with empty filter" account add bob --password x --allow 'read '
refuse "rule with bad access" account add bob --password x --allow 'admin a/b'
refuse "rule with # not last" account add bob --password x --allow 'read a/#/b'
refuse "rule with # inside a level" account add bob --password x --allow 'read a/b#'
refuse "rule with + inside a level" account add bob --password x --allow 'read a+/b'
refuse "rule with two spaces" account add bob --password x --allow 'read  a/b'
refuse "rule with a trailing space" account add bob --password x --allow 'read a/b '
refuse "one bad rule among good ones" account add bob --password x --allow 'read a' --allow 'write a/##'
run account add 'bad:name' --password 'SuperSecretPw-42'
CTX="password never on stderr"
hasnt "stderr" "$ERR" 'SuperSecretPw-42'
ne "exit status" 0 "$RC"

change "account name starting with - (after --)" account -dash account add --password x -- -dash
has "name" "$OUT" '"name":"-dash"'
ok "account show -- NAME" account show -- -dash
has "name" "$OUT" '"name":"-dash"'
change "account delete -- NAME" account -dash account delete -- -dash
refuse "account add: -- not followed by NAME only" account add -- -dash --password x

ok "account show" account show alice
eq "account show" "{\"name\":\"alice\",\"superuser\":\"0\",\"rules\":$RULES_JSON,\"created_at\":\"$CREATED\"}" "$OUT"
ok "account list" account list
eq "account list order" "alice root.op@x svc" \
  "$(printf '%s' "$OUT" | grep -o '"name":"[^"]*"' | sed 's/"name":"//; s/"$//' | tr '\n' ' ' | sed 's/ $//')"
hasnt "no hashes in list" "$OUT" password_hash
hasnt "no hashes in list" "$OUT" '$7$'
refuse "account show unknown" account show nobody
refuse "account delete unknown" account delete nobody
refuse "account show bad name" account show 'a:b'
change "account delete" account svc account delete svc
eq "output" '{"deleted":"svc"}' "$OUT"
eq "account hash gone" 0 "$(rcli EXISTS "${P}account:svc")"
eq "not in accounts set" 0 "$(rcli SISMEMBER "${P}accounts" svc)"

# ==================================================================================== creds
# the golden product id is AA30C505 (added above with the golden OpenID and ProductKey)
ok "creds lierda type 0 (golden)" creds lierda --product-id "$PID" --node-eui "$EUI" --timestamp "$TS"
eq "golden type 0" "{\"client_id\":\"V2_AA30C505.20MQTTJ000121_0_1675404867\",\"username\":\"7ED01E2A-AA30C505-20MQTTJ000121\",\"password\":\"$PW0\",\"type\":0,\"timestamp\":1675404867}" "$OUT"
ok "creds lierda --type 0 (golden)" creds lierda --product-id aa30c505 --node-eui "$EUI" --type 0 --timestamp "$TS"
eq "golden password type 0" "$PW0" "$(jget password)"
ok "creds lierda type 1 (golden)" creds lierda --product-id "$PID" --node-eui "$EUI" --type 1 --timestamp "$TS"
eq "golden type 1" "{\"client_id\":\"V2_AA30C505.20MQTTJ000121_1_1675404867\",\"username\":\"7ED01E2A-AA30C505-20MQTTJ000121\",\"password\":\"$PW1\",\"type\":1,\"timestamp\":1675404867}" "$OUT"
T_BEFORE=$(date +%s)
ok "creds lierda default timestamp" creds lierda --product-id "$PID" --node-eui "$EUI" --type 1
T_AFTER=$(date +%s)
NOW_TS=$(printf '%s' "$OUT" | sed -n 's/.*"timestamp":\([0-9]*\)}.*/\1/p')
CTX="creds default timestamp"
if [[ -n $NOW_TS ]] && (( NOW_TS >= T_BEFORE && NOW_TS <= T_AFTER )); then pass; else fail "timestamp '$NOW_TS' not now"; fi
eq "client id" "V2_AA30C505.20MQTTJ000121_1_$NOW_TS" "$(jget client_id)"
like "password" '^([0-9A-F]{32})+$' "$(jget password)"
ne "password changes with the timestamp" "$PW1" "$(jget password)"
refuse "creds lierda --type 2" creds lierda --product-id "$PID" --node-eui "$EUI" --type 2
refuse "creds lierda bad timestamp" creds lierda --product-id "$PID" --node-eui "$EUI" --timestamp abc
refuse "creds lierda unknown device" creds lierda --product-id "$PID" --node-eui NOPE1
refuse "creds lierda unknown product" creds lierda --product-id 0F0F0F0F --node-eui "$EUI"
refuse "creds lierda krt product" creds lierda --product-id ABCDEF12 --node-eui "$EUI"
refuse "creds lierda bad NodeEui" creds lierda --product-id "$PID" --node-eui 'a/bcd'

ok "creds krt" creds krt --product-id K1 --device-id d1
eq "creds krt" "{\"client_id\":\"K1.d1\",\"username\":\"d1\",\"password\":\"$KDSEC\",\"client_id_shared\":\"K1\"}" "$OUT"
rcli HSET "${P}device:K1:auto1" enabled 1 origin auto created_at 1 secret '' activated 0 >/dev/null
rcli SADD "${P}devices:K1" auto1 >/dev/null
refuse "creds krt device without secret" creds krt --product-id K1 --device-id auto1
refuse "creds krt unknown device" creds krt --product-id K1 --device-id nope
refuse "creds krt lierda product" creds krt --product-id "$PID" --device-id "$EUI"
refuse "creds krt bad id" creds krt --product-id 'K+' --device-id d1

ok "creds emu wudun" creds emu --product-key PK1 --device gw1
eq "creds emu wudun" '{"client_id":"gw1","username":"gw1","password":null,"topic_prefix":"v1/wudun/PK1/gw1/","note":"only a hash of the secret is stored; the secret was shown once by device add"}' "$OUT"
ok "creds emu user" creds emu --tenant T1 --device gw2
eq "creds emu user" '{"client_id":"gw2","username":"gw2","password":null,"topic_prefix":"v1/user/T1/gw2/","note":"only a hash of the secret is stored; the secret was shown once by device add"}' "$OUT"
refuse "creds emu namespace mismatch" creds emu --tenant PK1 --device gw1
refuse "creds emu unknown device" creds emu --product-key PK1 --device nope
refuse "creds emu no product flag" creds emu --device gw1

# ==================================================================================== Lua is the authority
CTX="lua validation"
for args in "product_add|krt|a+b|product_secret|12345678" "product_add|lierda|AA30C50|openid|7ED01E2A|product_key|$PKEY|auth_type|0" \
  "device_add|emu|PK1|gw9|wudun|not-a-hash" "device_add|lierda|$PID|ab|" "account_add|bob|$GIVEN_HASH|0|read a/#/b" \
  "account_add|gw1|$GIVEN_HASH|0" "account_add|bob|$GIVEN_HASH|0|read a/b " "device_add|krt|K1|d:1||12345678" "product_show|a:b" "device_show|K1|../x|0"; do
  IFS='|' read -r -a lua_args <<<"$args"
  before=$(digest)
  lua "${lua_args[@]}"
  if [[ $OUT != '{'* && $OUT != '['* && -n $OUT ]]; then pass; else fail "Lua accepted ${lua_args[*]}: $OUT"; fi
  eq "Lua refusal changes nothing (${lua_args[0]})" "$before" "$(digest)"
done

# ==================================================================================== product delete
change "device add emu gw3" device "PK1:gw3" device add emu --product-key PK1 --device gw3
before=$(xlen)
change "product delete emu" product PK1 product delete PK1
eq "output" '{"deleted":"PK1"}' "$OUT"
eq "product gone" 0 "$(rcli EXISTS "${P}product:PK1")"
eq "devices set gone" 0 "$(rcli EXISTS "${P}devices:PK1")"
eq "device gw1 gone" 0 "$(rcli EXISTS "${P}device:PK1:gw1")"
eq "device gw3 gone" 0 "$(rcli EXISTS "${P}device:PK1:gw3")"
eq "emu_uid gw1 gone" 0 "$(rcli EXISTS "${P}emu_uid:gw1")"
eq "emu_uid gw3 gone" 0 "$(rcli EXISTS "${P}emu_uid:gw3")"
eq "emu_uid of another product kept" T1 "$(rcli GET "${P}emu_uid:gw2")"
eq "not in products set" 0 "$(rcli SISMEMBER "${P}products" PK1)"
eq "one change for the whole delete" $((before + 1)) "$(xlen)"
change "uid free again" device "T1:gw1" device add emu --tenant T1 --device gw1
rcli HSET "${P}last_offline:K1" d1 300 gone-before 200 >/dev/null   # a device deleted while the plugin wrote
change "product delete krt" product K1 product delete K1
eq "krt devices gone" 0 "$(rcli EXISTS "${P}device:K1:d1" "${P}device:K1:auto1" "${P}devices:K1" "${P}product:K1")"
eq "krt times hashes gone" 0 "$(rcli EXISTS "${P}last_online:K1" "${P}last_offline:K1")"
change "product delete lierda (lower-case id)" product "$PID" product delete aa30c505
eq "lierda device gone" 0 "$(rcli EXISTS "${P}device:$PID:$EUI" "${P}devices:$PID" "${P}product:$PID")"
refuse "product delete twice" product delete K1
refuse "device add to a deleted product" device add krt --product-id K1 --device-id d1
CTX="keys left"
eq "no key outside the prefix in db 0" "" "$(rcli --scan | grep -v "^$P" || true)"

# ==================================================================================== --prefix
CTX=prefix
export IOTGATE_REDIS=$URI1
CUR_URI=$URI1
Q=t2:
change_q() { local saved=$P; P=$Q; change "$@"; P=$saved; }
change_q "prefix: product add lierda" product "$PID" --prefix "$Q" product add lierda --openid "$OID" \
  --product-id "$PID" --product-key "$PKEY" --auth-type 2
change_q "prefix: product add krt" product K1 --prefix "$Q" product add krt --product-id K1
change_q "prefix: product add emu" product PK1 --prefix "$Q" product add emu --product-key PK1
change_q "prefix: device add lierda" device "$PID:$EUI" --prefix "$Q" device add lierda --product-id "$PID" \
  --node-eui "$EUI" --secret "$DSEC"
change_q "prefix: device add krt" device K1:d1 --prefix "$Q" device add krt --product-id K1 --device-id d1
change_q "prefix: device add emu" device PK1:gw1 --prefix "$Q" device add emu --product-key PK1 --device gw1
change_q "prefix: account add" account acc --prefix "$Q" account add acc --password x --allow 'read a/#'
change_q "prefix: device disable" device K1:d1 --prefix "$Q" device disable K1 d1
change_q "prefix: product disable" product K1 --prefix "$Q" product disable K1
ok "prefix: creds" --prefix "$Q" creds lierda --product-id "$PID" --node-eui "$EUI" --timestamp "$TS"
eq "prefix: golden password" "$PW0" "$(jget password)"
ok "prefix: product list" --prefix "$Q" product list
eq "prefix: product list" "$PID K1 PK1" \
  "$(printf '%s' "$OUT" | grep -o '"id":"[^"]*"' | sed 's/"id":"//; s/"$//' | tr '\n' ' ' | sed 's/ $//')"
ok "prefix: device list" --prefix "$Q" device list K1
ok "prefix: account list" --prefix "$Q" account list
has "prefix: account" "$OUT" '"name":"acc"'
IOTGATE_PREFIX=t3: run product add emu --tenant T3
CTX="IOTGATE_PREFIX"
eq "exit status" 0 "$RC"
eq "key under IOTGATE_PREFIX" 1 "$(rcli1 EXISTS t3:product:T3)"
eq "change under IOTGATE_PREFIX" 1 "$(rcli1 XLEN t3:changes)"
ok "default prefix does not see the others" product list
eq "default prefix: empty" "[]" "$OUT"
refuse "default prefix: unknown product" product show K1
IOTGATE_PREFIX=t3: run --prefix "$Q" product show K1
CTX="--prefix overrides IOTGATE_PREFIX"
eq "exit status" 0 "$RC"
has "product of t2:" "$OUT" "\"id\":\"K1\""
CTX=prefix
ALLKEYS=$(rcli1 --scan | sort)
like "keys were written" 't2:product:K1' "$ALLKEYS"
eq "every key under its prefix" "" "$(printf '%s\n' "$ALLKEYS" | grep -v -e '^t2:' -e '^t3:' || true)"
eq "t2 keys" "t2:account:acc t2:accounts t2:changes t2:device:$PID:$EUI t2:device:K1:d1 t2:device:PK1:gw1 t2:devices:$PID t2:devices:K1 t2:devices:PK1 t2:emu_uid:gw1 t2:product:$PID t2:product:K1 t2:product:PK1 t2:products t2:schema" \
  "$(printf '%s\n' "$ALLKEYS" | grep '^t2:' | tr '\n' ' ' | sed 's/ $//')"
eq "t2 changes" 9 "$(rcli1 XLEN t2:changes)"

# ==================================================================================== security
# Secrets never reach a command line, where every local user can read them (ps): a redis-cli and a mosquitto_passwd
# that record their arguments stand in for the real ones while the CLI handles secrets of every kind.
SPY=$TMP/spy
mkdir -p "$SPY"
for tool in redis-cli mosquitto_passwd; do
  printf '#!/usr/bin/env bash\nprintf "%%s\\n" "$*" >> %q\nexec %q "$@"\n' "$SPY/args.log" "$(command -v "$tool")" \
    > "$SPY/$tool"
  chmod +x "$SPY/$tool"
done
S_KEY=A1B2C3D4E5F60718293A4B5C6D7E8F90
S_DEV=0F1E2D3C4B5A69788796A5B4C3D2E1F0
spied() { PATH="$SPY:$PATH" ok "$@"; }
spied "secrets: lierda product" product add lierda --openid 5EC0000A --product-id 5EC0000B --product-key "$S_KEY" --auth-type 1
spied "secrets: lierda device" device add lierda --product-id 5EC0000B --node-eui SECRETDEV1 --secret "$S_DEV"
spied "secrets: creds lierda" creds lierda --product-id 5EC0000B --node-eui SECRETDEV1 --type 1 --timestamp 1675404867
spied "secrets: krt product" product add krt --product-id SECKRT --product-secret 'krt-product-secret!'
spied "secrets: krt device" device add krt --product-id SECKRT --device-id SD1 --secret 'krt-device-secret-1'
spied "secrets: account" account add spyacc --password 'account pass word 1' --allow 'read x/#'
spied "secrets: emu product" product add emu --product-key SECPK
spied "secrets: emu device" device add emu --product-key SECPK --device gwspy --secret 'gateway-secret-1'
CTX="secrets on command lines"
SPIED=$(cat -- "$SPY/args.log")
has "the stand-ins ran" "$SPIED" "--raw"
for secret in "$S_KEY" "$S_DEV" 'krt-product-secret!' 'krt-device-secret-1' 'account pass word 1' 'gateway-secret-1'; do
  hasnt "no secret in any argument list" "$SPIED" "$secret"
done

# Lierda type 0 products cap the devices AUTH requests create; a KRT ProductID that is a Lierda OpenID (or the
# reverse) would share topics under /sys/.
ok "lierda --limit" product add lierda --openid 5EC0000C --product-id 5EC0000D --auth-type 0 --limit 7
eq "limit stored" 7 "$(jget limit)"
ok "lierda default limit" product add lierda --openid 5EC0000C --product-id 5EC0000E --auth-type 0
eq "default limit" 1000 "$(jget limit)"
refuse "lierda --limit 0" product add lierda --openid 5EC0000C --product-id 5EC0000F --auth-type 0 --limit 0
refuse "KRT ProductID = a Lierda OpenID" product add krt --product-id 5EC0000C --product-secret 'krt-product-secret'
has "names the clash" "$ERR" "is the OpenID of Lierda product"
ok "KRT product" product add krt --product-id C1A5000A --product-secret 'krt-product-secret'
refuse "Lierda OpenID = a KRT ProductID" product add lierda --openid C1A5000A --product-id 5EC00010 --auth-type 1
has "names the clash" "$ERR" "is the ProductID of KRT product"

# A device's retained topics (recorded by the plugin) are cleared by every broker when the device is deleted.
rcli SADD "${P}retained:5EC0000B:SECRETDEV1" "/sys/5EC0000A/5EC0000B/SECRETDEV1/downlink" >/dev/null
ok "device delete with retained topics" device delete 5EC0000B SECRETDEV1
CTX="clear_retained"
CMD=$(rcli XREVRANGE "${P}commands" + - COUNT 1 | tr '\n' ' ')
has "a clear_retained command" "$CMD" 'kind clear_retained topics ["\/sys\/5EC0000A\/5EC0000B\/SECRETDEV1\/downlink"]'
eq "the record is gone" 0 "$(rcli EXISTS "${P}retained:5EC0000B:SECRETDEV1")"

# ==================================================================================== function library
# The CLI calls its Lua scripts as one Redis function library (the end of lib.lua), which it loads itself whenever
# Redis lacks that version of it: a fresh Redis, FUNCTION FLUSH, another version loaded by other scripts.
CTX="function library"
COMMANDS=$(for f in "$LUA"/*.lua; do f=${f##*/}; f=${f%.lua}; [[ $f == lib ]] || printf '%s\n' "$f"; done | sort)
lib_functions() { rcli FUNCTION LIST LIBRARYNAME iotgate | grep -E '^iotgate_[0-9a-f]{12}_' | sort; }
FUNCS=$(lib_functions)
VERSION=$(printf '%s\n' "$FUNCS" | head -n 1 | cut -d_ -f2)
like "loaded by the commands above (a 12-digit version)" '^[0-9a-f]{12}$' "$VERSION"
eq "one function per command script" "$(printf '%s\n' "$COMMANDS" | sed "s/^/iotgate_${VERSION}_/")" "$FUNCS"
eq "one library" "iotgate" "$(rcli FUNCTION LIST | grep -x iotgate)"
eq "a read is a no-writes function" "no-writes" \
  "$(rcli FUNCTION LIST LIBRARYNAME iotgate | grep -A4 -x "iotgate_${VERSION}_product_list" | tail -n 1)"
eq "FCALL_RO of a read" '[]' "$(rcli FCALL_RO "iotgate_${VERSION}_account_list" 0 "$P" | sed 's/\[{.*/[]/')"
eq "a write is not" "" "$(rcli FUNCTION LIST LIBRARYNAME iotgate | grep -A4 -x "iotgate_${VERSION}_product_add" | tail -n 1)"
PRODUCTS=$("$CLI" product list)
rcli FUNCTION FLUSH >/dev/null
ok "after FUNCTION FLUSH" product list
eq "the same answer" "$PRODUCTS" "$OUT"
eq "the library is back" "$FUNCS" "$(lib_functions)"
# an older version of the library: the same library name, other functions
rcli FUNCTION LOAD REPLACE "#!lua name=iotgate
redis.register_function('iotgate_000000000000_product_list', function() return '[\"old\"]' end)" >/dev/null
ok "after another version was loaded" product list
eq "the same answer (this version's)" "$PRODUCTS" "$OUT"
eq "this version replaced it" "$FUNCS" "$(lib_functions)"
# another copy of the scripts (another version) and this one, taking turns: each loads its own
OTHER=$TMP/other-lua
cp -r -- "$LUA" "$OTHER"
printf '\n-- another version\n' >>"$OTHER/product_list.lua"
for turn in 1 2; do
  IOTGATE_LUA_DIR=$OTHER ok "other scripts, turn $turn" product list
  eq "other scripts: the same answer" "$PRODUCTS" "$OUT"
  ne "other scripts: their own version" "$FUNCS" "$(lib_functions)"
  ok "these scripts, turn $turn" product list
  eq "these scripts: the same answer" "$PRODUCTS" "$OUT"
  eq "these scripts: this version" "$FUNCS" "$(lib_functions)"
done
# a Redis user that may call functions but not load them: a clear refusal, nothing loaded
rcli ACL SETUSER fcallonly on '>fcall-only-pw' '~*' '&*' +@all -function >/dev/null
rcli FUNCTION FLUSH >/dev/null
IOTGATE_REDIS=redis://fcallonly:fcall-only-pw@127.0.0.1:$PORT/0 run product list
eq "cannot load: exit status" 1 "$RC"
like "cannot load: says why" '^iotgate: redis: cannot load the function library: NOPERM' "$ERR"
eq "cannot load: nothing loaded" "" "$(lib_functions)"
rcli ACL DELUSER fcallonly >/dev/null
ok "loaded again" product list
eq "and the same answer" "$PRODUCTS" "$OUT"

# ==================================================================================== summary
echo "$PASS passed, $FAIL failed"
(( FAIL == 0 ))
