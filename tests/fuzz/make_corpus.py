#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/<name>.

The seeds are the examples of the protocol documents (shared/notes/protocol.md, shared/PROTOCOL-NOTES.md:
the auth request, the V2 test vectors, the KRT register messages of decision 7, the topic table, the EMU topics
and results) in each target's input format (see the comment at the top of each fuzz_<target>.cpp), with the
credentials of the fixture in fuzz_common.h. Run it again after changing an input format; it replaces the
corpora. Needs the openssl command (AES-128-ECB for the V2 passwords and encrypted payloads).
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

OPENID, L1, EUI = "7ED01E2A", "AA30C505", "20MQTTJ000121"
L1KEY, SECRET = "DB6FACEF35BEBA0517712F0E4BE32936", "326086233FAB8A96566796551EB1DFF8"
L0, L0KEY = "AA30C500", "00112233445566778899AABBCCDDEE00"
L2, L2KEY = "AA30C502", "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
LE, LEKEY = "AA30C50E", "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"
SECRET_LE1 = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5AE1"
SESSION_KEY_LE2 = "3F81A97DDA9B30089BB31CE21826E745"
NOW = 1675404867
OP_HASH = ("$7$101$P1hOONOJYF3fE6+D$HKKEKSqUBCkMHJ/RkSA4z9hcjwcUFCKHvyqf97jML4yptOGI8dVSioW3CTajP41hTLujHH7Y80"
           "NuKCQBI9lMog==")


def aes_hex(key_hex, plaintext):
    out = subprocess.run(["openssl", "enc", "-aes-128-ecb", "-K", key_hex], input=plaintext.encode(),
                         stdout=subprocess.PIPE, check=True).stdout
    return out.hex().upper()


def v2_password(secret, pid, eui, key, ts=None):
    text = f"{pid}.{eui}_{key}" + (f"_{ts}" if ts is not None else "")
    return aes_hex(secret, text)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def b(*parts):
    return b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts)


# --- fuzz_login: FLAGS CID \0 USER \0 TOPIC \0 PASSWORD --------------------------------------------------------
READ, WRITE, SUB = 0x03, 0x07, 0x0B  # username + password present, access read / write / subscribe


def login_seeds():
    P = f"/sys/{OPENID}/{L1}/{EUI}/"
    v0 = v2_password(SECRET, L1, EUI, L1KEY)
    v1 = v2_password(SECRET, L1, EUI, L1KEY, NOW)
    seeds = {
        "v2_type0": (WRITE, f"V2_{L1}.{EUI}_0_{NOW}", f"{OPENID}-{L1}-{EUI}", P + "uplink", v0),
        "v2_type0_sub": (SUB, f"V2_{L1}.{EUI}_0_{NOW}", f"{OPENID}-{L1}-{EUI}", P + "+", v0),
        "v2_type1": (READ, f"V2_{L1}.{EUI}_1_{NOW}", f"{OPENID}-{L1}-{EUI}", P + "downlink", v1),
        "v2_type1_lower": (READ, f"V2_{L1}.{EUI}_1_{NOW}", f"{OPENID}-{L1}-{EUI}", P + "ota_notify", v1.lower()),
        "v2_type1_future": (READ | 0x20, f"V2_{L1}.{EUI}_1_{NOW}", f"{OPENID}-{L1}-{EUI}", P + "downlink", v1),
        "v2_encrypted_rekey": (WRITE, f"V2_{LE}.ENCDEV0001_0_1", f"{OPENID}-{LE}-ENCDEV0001",
                               f"/sys/{OPENID}/{LE}/ENCDEV0001/firmware_report",
                               v2_password(SECRET_LE1, LE, "ENCDEV0001", LEKEY)),
        "v2_no_secret": (WRITE, f"V2_{L1}.NOSECRET01_0_1", f"{OPENID}-{L1}-NOSECRET01", P + "uplink", v0),
        "v2_disabled": (WRITE, f"V2_{L1}.DISABLED01_0_1", f"{OPENID}-{L1}-DISABLED01", P + "uplink", v0),
        "auth_type1": (WRITE, f"{L1}-{EUI}", f"AUTH-{OPENID}-{L1}", "/sys/device/auth", L1KEY),
        "auth_type1_sub": (SUB, f"{L1}-{EUI}", f"AUTH-{OPENID}-{L1}", P + "downlink", L1KEY.lower()),
        "auth_type0_new": (WRITE, f"{L0}-NEWDEV0001", f"AUTH-{OPENID}-{L0}", "/sys/device/auth", L0KEY),
        "auth_type2": (WRITE, f"{L2}-TYPE2DEV01", f"AUTH-{OPENID}-{L2}", "/sys/device/auth", L2KEY),
        "auth_wrong_openid": (WRITE, f"{L1}-{EUI}", f"AUTH-11223344-{L1}", "/sys/device/auth", L1KEY),
        "krt_device": (WRITE, "KP1", "KD2", "/sys/KP1/KD2/thing/ota/post", "krt-device-secret-KP1-KD2"),
        "krt_device_dotted": (READ, "KP1.KD1", "KD1", "/sys/KP1/KD1/thing/ota/set", "krt-device-secret-KP1-KD1"),
        "krt_register_new": (WRITE, "KP1.NEWK1", "NEWK1", "/sys/KP1/NEWK1/thing/register/post", "krt-product-secret-KP1"),
        "krt_register_bare": (READ, "KP1", "NEWK2", "/sys/KP1/NEWK2/thing/register/set", "krt-product-secret-KP1"),
        "krt_register_limit": (WRITE, "KP3.NEWK9", "NEWK9", "/sys/KP3/NEWK9/thing/register/post", "krt-product-secret-KP3"),
        "krt_register_off": (WRITE, "KP2.NEWK9", "NEWK9", "/sys/KP2/NEWK9/thing/register/post", "krt-product-secret-KP2"),
        "emu_wudun": (WRITE, "gw1", "gw1", "v1/wudun/PK1/gw1/ota/emu_version/result", "gw1-pass-word"),
        "emu_wudun_sub": (SUB, "gw1", "gw1", "v1/wudun/PK1/gw1/ota/+/command", "gw1-pass-word"),
        "emu_tenant": (READ, "gw2", "gw2", "v1/user/T1/gw2/ota/emu_upgrade/command", "gw2-pass-word"),
        "emu_disabled_product": (WRITE, "gw3", "gw3", "v1/wudun/PK2/gw3/ota/emu_version/result", "gw1-pass-word"),
        "account_read": (SUB, "operator:1", "operator", "/sys/#", "op-pass-word"),
        "account_user_rule": (WRITE, "operator:1", "operator", "app/operator/x", "op-pass-word"),
        "account_client_rule": (WRITE, "operator:1", "operator", "cmd/operator:1/y", "op-pass-word"),
        "account_unbound_id": (WRITE, "backend-1", "operator", "cmd/backend-1/y", "op-pass-word"),
        "account_superuser": (WRITE, "admin:1", "admin", "$SYS/broker/x", "op-pass-word"),
        "account_nopass": (READ, "nopass", "nopass", "a/b", "x"),
    }
    for name, (flags, cid, user, topic, pw) in seeds.items():
        write("fuzz_login", name, bytes([flags]) + b(cid, user, topic, pw))
    write("fuzz_login", "no_username", bytes([0x02]) + b("KP1", "", "/sys/KP1/KD2/thing/ota/post", "x"))
    write("fuzz_login", "nul_in_id", bytes([0x13]) + b("KP1.KD\x012", "KD\x012", "/sys/KP1/KD\x012/thing/", "y"))


# --- fuzz_messages: operations OP PAYLOAD separated by NUL ---------------------------------------------------
T = 25  # rows of kTable
RESULT, STRAY, DEVICE, PRODUCT, DISCONNECT, LOGIN, TASK, COMMAND, TICK = range(T, T + 9)


def op(index, payload=""):
    return bytes([(ord("a") + index) & 0xFF]) + (payload if isinstance(payload, bytes) else payload.encode())


def result(outcome=0, job=0, rest=""):
    return op(RESULT, bytes([0x30 + job, 0x30 + outcome]) + rest.encode())


def ops(*items):
    return b"\0".join(items)


AUTH_REQ = ('{"MessageId":%s,"HeaderCtrl":1,"Payload":{"OpenID":"%s","ProductID":"%s","NodeEui":"%s","Type":%d},'
            '"Version":"2.0"}')


def messages_seeds():
    seeds = {
        "auth_type1": ops(op(0, AUTH_REQ % ("1231", OPENID, L1, EUI, 1))),
        "auth_type1_string_id": ops(op(0, AUTH_REQ % ('"1231"', OPENID, L1, EUI, 1))),
        "auth_wrong_version": ops(op(0, AUTH_REQ.replace('"2.0"', '"1.0"') % ("7", OPENID, L1, EUI, 1))),
        "auth_type0_new": ops(op(1, AUTH_REQ % ("5", OPENID, L0, "NEWDEV0001", 0)), result(0)),
        "auth_type0_busy": ops(op(1, AUTH_REQ % ("5", OPENID, L0, "NEWDEV0001", 0)), result(5)),
        "auth_type0_custom": ops(op(1, AUTH_REQ % ("5", OPENID, L0, "NEWDEV0001", 0)),
                                 result(3, 0, "enabled=1\nsecret=00112233445566778899AABBCCDDEEFF\norigin=auth")),
        "auth_type0_existing": ops(op(2, AUTH_REQ % ("6", OPENID, L0, "FREEDEV001", 0))),
        "auth_type2": ops(op(3, AUTH_REQ % ("8", OPENID, L2, "TYPE2DEV01", 2))),
        "auth_encrypted": ops(op(4, AUTH_REQ % ("9", OPENID, LE, "ENCDEV0001", 1)), result(0), result(0)),
        "auth_unregistered": ops(op(5, AUTH_REQ % ("10", OPENID, L1, "UNREG0001", 1))),
        "auth_no_secret": ops(op(6, AUTH_REQ % ("11", OPENID, L1, "NOSECRET01", 1)), result(6, 0, "x")),
        "auth_then_disable": ops(op(6, AUTH_REQ % ("12", OPENID, L1, "NOSECRET01", 1)), op(DEVICE, "\x06enabled=0"),
                                 result(2)),
        "krt_register": ops(op(7, '{"CMD":20,"ID":"abc","PRODUCT_ID":"KP1","DEVICE_ID":"NEWK1"}'), result(0),
                            op(7, '{"CMD":20,"ID":"abd"}'), op(7, '{"CMD":21,"ID":"abd","BACK":"OK"}')),
        "krt_register_limit": ops(op(7, '{"CMD":20,"ID":7}'), result(6, 0, "\x03")),
        "krt_register_precreated": ops(op(8, '{"CMD":20,"ID":"k3","PRODUCT_ID":"KP1","DEVICE_ID":"KD3"}'), result(1)),
        "krt_register_has_secret": ops(op(9, '{"CMD":20,"ID":"k1"}')),
        "krt_register_bare_takeover": ops(op(10, '{"CMD":20,"ID":"b1","PRODUCT_ID":"KP1","DEVICE_ID":"NEWK2"}'),
                                          op(LOGIN, "0"), result(0)),
        "krt_register_disconnect": ops(op(10, '{"CMD":20,"ID":"b2"}'), op(DISCONNECT, "\x0a"), result(0), op(STRAY)),
        "lierda_firmware_report": ops(op(11, '{"MessageId":"55","HeaderCtrl":8,"Payload":{"HardVer":"v1.0.1",'
                                             '"SoftVer":"v1.0","Type":2},"Version":"2.0"}'),
                                      op(12, '{"MessageId":56,"HeaderCtrl":9,"Payload":{"DownID":"T-L1-00000000"},'
                                             '"Version":"2.0"}'),
                                      op(11, '{"MessageId":57,"HeaderCtrl":8,"Payload":{"SoftVer":"v2.0"},'
                                             '"Version":"2.0"}')),
        "lierda_firmware_module": ops(op(COMMAND, "kind=push\ntask=T-L1M\ndevices=" + EUI),
                                      op(11, '{"MessageId":1,"HeaderCtrl":8,"Payload":{"HardVer":"h1","SoftVer":"m1",'
                                             '"Type":2,"Module":"module1"},"Version":"2.0"}')),
        "lierda_firmware_test_task": ops(op(11, '{"MessageId":2,"HeaderCtrl":8,"Payload":{"SoftVer":"t1",},'
                                                '"Version":"2.0",}'), op(TICK, "\xff1")),
        # The OTA handlers parse leniently (trailing commas as in the seeds' samples, NaN / Infinity).
        "lierda_firmware_report_lenient": ops(op(11, '{"MessageId":NaN,"HeaderCtrl":8,"Payload":{"SoftVer":"v1.0",},'
                                                     '"Version":"2.0",}')),
        "lierda_uplink": ops(op(13, '{"MessageId":3,"HeaderCtrl":4,"Payload":{"a":1},"Version":"2.0"}')),
        "lierda_no_key_report": ops(op(14, '{"MessageId":4,"HeaderCtrl":8,"Payload":{"SoftVer":"v1.0"},'
                                           '"Version":"2.0"}'), result(0)),
        "krt_ota": ops(op(15, '{"CMD":10,"ID":"1","HW_VERSION":"1.0.0","FW_VERSION":"1.0.0"}'),
                       op(15, '{"CMD":11,"ID":"T-KP2-00000000","BACK":"OK"}'),
                       op(15, '{"CMD":10,"ID":"2","HW_VERSION":"1.0.0","FW_VERSION":"1.0.1"}')),
        "emu_version": ops(op(16, '{"trace_id":"t1","mid":"5d6e0f1a-0000-4000-8000-000000000001","type":"emu_version",'
                                  '"device_uid":"gw1","sub_device_id":"0","timestamp":1675404867000,"data":[{'
                                  '"device_id":3,"status":1,"emu_upgrade_success":1,"emu_upgrade_device":3,'
                                  '"emu_upgrade_status":5,"emu_upgrade_content":100,"emu_product_sn":"SN0001",},'
                                  '{"device_id":21,"status":2,"emu_upgrade_success":null,"emu_upgrade_device":null,'
                                  '"emu_upgrade_status":null,"emu_upgrade_content":null,"emu_product_sn":null},]}')),
        "emu_upgrade": ops(op(17, '{"trace_id":"t2","mid":"m2","type":"emu_upgrade","device_uid":"gw1",'
                                  '"sub_device_id":"3","timestamp":"1675404867000","data":{"device_id":"3",'
                                  '"download_status":1}}')),
        "emu_upgrade_result": ops(op(18, '{"mid":"m3","data":{"device_id":3,"status":1,"emu_upgrade_success":1,'
                                         '"emu_upgrade_device":3,"emu_upgrade_status":5,"emu_upgrade_content":"100"}}')),
        "emu_tenant": ops(op(19, '{"mid":"m4","sub_device_id":4,"data":[{"status":"2"}]}')),
        "account_on_auth_topic": ops(op(20, AUTH_REQ % ("1", OPENID, L1, EUI, 1))),
        "krt_session_on_auth_topic": ops(op(21, AUTH_REQ % ("1", OPENID, L1, EUI, 1))),
        "encrypted_report": ops(op(22, '{"HardVer":"v1","SoftVer":"v1.0","Type":2}'),
                                op(23, '{"DownID":"T-LE-00000000"}')),
        "encrypted_plain_payload": ops(op(24, '{"MessageId":9,"HeaderCtrl":8,"Payload":{"SoftVer":"v1.0"},'
                                              '"Version":"2.0"}')),
        "rekey_result": ops(result(0), result(3, 0, "session_id=4655434B\nnonce=128\nsecret=" + SECRET_LE1)),
        "task_update": ops(op(TASK, "\x05product_id=" + L1 + "\ntarget_version=v9\nfrom_version=v1.0\nstatus=1"),
                           op(11, '{"MessageId":5,"HeaderCtrl":8,"Payload":{"SoftVer":"v1.0"},"Version":"2.0"}')),
        "command_publish": ops(op(COMMAND, "kind=publish\ntopic=v1/wudun/PK1/gw1/ota/emu_version/command\n"
                                           "payload={\"mid\":\"1\"}"),
                               op(COMMAND, "kind=ask_firmware\nproduct=" + L1 + "\ndevice=" + EUI)),
        "product_change": ops(op(PRODUCT, "\x12protocol=lierda\nopenid=" + OPENID + "\nproduct_key=" + L1KEY +
                                 "\nauth_type=2"), op(0, AUTH_REQ % ("1", OPENID, L1, EUI, 2))),
    }
    for name, data in seeds.items():
        write("fuzz_messages", name, data)


# --- fuzz_topics: FLAGS P \0 F \0 T \0 ID1 \0 ID2 \0 RULE -----------------------------------------------------
def topics_seeds():
    P = f"/sys/{OPENID}/{L1}/{EUI}/"
    seeds = {
        "lierda_plus": (0, P + "+", P + "downlink", P + "downlink", L1, EUI, "read /sys/#"),
        "lierda_suffixes": (2, "model/event/alarm/report", "model/service/+/ack", "model/service/reboot", L1, EUI,
                            "write /sys/+/+/+/uplink"),
        "lierda_hex": (4, "model/hex", "model/hex/#", "model/hex_ack", L1, EUI, "readwrite /sys/%c/#"),
        "lierda_auth": (0, "/sys/device/auth", P + "downlink", "downloadlink", L1, EUI, "read %u/#"),
        "krt": (2, "/sys/KP1/KD1/thing/#", "/sys/KP1/KD1/thing/ota/set", "ota/post", "KP1", "KD1",
                "readwrite app/%u/#"),
        "krt_register": (0, "register/set", "/sys/KP1/NEWK1/thing/register/+", "register/post", "KP1", "NEWK1",
                         "write cmd/%c/+"),
        "emu_wudun": (0, "v1/wudun/PK1/gw1/ota/+/command", "v1/wudun/PK1/gw1/ota/emu_version/command",
                      "ota/emu_version/result", "PK1", "gw1", "read v1/+/+/+/ota/+/result"),
        "emu_tenant": (1, "v1/user/T1/gw2/ota/#", "v1/user/T1/gw2/ota/+/command", "ota/emu_upgrade/command", "T1",
                       "gw2", "read v1/user/#"),
        "sys_dollar": (8, "#", "$SYS/broker/#", "$SYS/broker/load", "a", "b", "read #"),
        "wildcards": (6, "+/+/#", "a/+/c", "a//c", "", "", "readwrite +/%u"),
        "empty_levels": (0, "/", "//", "/a/", "x", "y", "read /+/"),
    }
    for name, (flags, *parts) in seeds.items():
        write("fuzz_topics", name, bytes([flags]) + b(*parts))


# --- fuzz_acl_rules: SELECTOR REST ---------------------------------------------------------------------------
def acl_seeds():
    seeds = {
        "rule_read": "0read /sys/#",
        "rule_readwrite_user": "0readwrite app/%u/#",
        "rule_write_client": "0write cmd/%c/+",
        "account": b("1" + OP_HASH, '["read /sys/#","write cmd/%c/+","readwrite v1/+/+/+/ota/+/result"]', "1"),
        "account_no_hash": b("1", '[]', "0"),
        "pbkdf2": "2" + OP_HASH,
        "product_lierda": b("3" + L1, "protocol=lierda", "openid=" + OPENID, "product_key=" + L1KEY, "auth_type=1",
                            "encrypted=1", "enabled=1"),
        "product_krt": b("3KP1", "protocol=krt", "product_secret=krt-product-secret-KP1", "dynamic_register=1",
                         "auto_create=1", "limit=3"),
        "product_emu": b("3PK1", "protocol=emu", "namespace=wudun"),
        "device_emu": b("4gw1", "secret_hash=" + OP_HASH, "enabled=1", "origin=cli", "last_online=1675404867"),
        "device_lierda": b("4" + EUI, "secret=" + SECRET, "session_id=4655434B", "nonce=128",
                           "session_key=" + SESSION_KEY_LE2, "session_key_expires=1675491267", "activated=1"),
        "config": b("5redis_host=127.0.0.1", "redis_port=6379", "redis_db=0", "max_payload=65536",
                    "log_level=debug", "key_prefix=iotgate:", "clock_skew=60", "session_key_ttl=172800"),
        "hex": "6" + SECRET,
        "registry": b"7" + bytes([0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 2, 1, 3, 2, 1, 0, 1, 0]),
    }
    for name, data in seeds.items():
        write("fuzz_acl_rules", name, data)


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    login_seeds()
    messages_seeds()
    topics_seeds()
    acl_seeds()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(CORPUS) for f in fs)
    print(f"wrote {CORPUS} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
