#!/usr/bin/python3
"""Real-browser test of the iotgate console (web/).

Starts, on loopback ports of its own: redis-server, mosquitto with the iotgate plugin, and iotgate-api serving
web/ at /. Seeds products, devices and two access tokens (alice, bob) with scripts/iotgate. Then drives headless
Chromium through the console: sign-in, products and devices (enable/disable), the task form (inline errors and a
server refusal), a test task started from the console and rolled out to real MQTT devices (KRT protocol, paho)
whose per-state progress the task view must show by itself, the version chart, OTA logs and op-logs, the review
flow (a non-reviewer is refused, the reviewer approves), test-to-production and escaping of API text.

Screenshots (PNG) go to $IOTGATE_SCREENSHOTS or --screenshots (default build/screenshots).
Exit status 0 only when every check passed; the last line is "N passed, M failed".

Needs (Debian 12): chromium, chromium-driver, python3-selenium, python3-paho-mqtt, redis-server, mosquitto.
"""
import argparse
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ------------------------------------------------------------------------------------------ results

PASSED = []
FAILED = []


def check(name, ok, detail=''):
    (PASSED if ok else FAILED).append(name)
    print(f"{'PASS' if ok else 'FAIL'}: {name}{'' if ok or not detail else ' -- ' + str(detail)}", flush=True)
    return ok


def wait_until(fn, timeout, interval=0.1):
    """Calls fn until it returns a truthy value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except Exception:  # noqa: BLE001 - a page in transition (stale element, etc.)
            v = None
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ processes

class Procs:
    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.workdir, f'{name}.log'), 'wb')
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env, cwd=self.workdir)
        self.procs.append((name, p, log))
        return p

    def log(self, name):
        try:
            with open(os.path.join(self.workdir, f'{name}.log'), 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def stop_all(self):
        for name, p, log in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait(timeout=5)
            log.close()
        self.procs = []


# ------------------------------------------------------------------------------------------ HTTP API

class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if token is not None:
            req.add_header('Access-Token', token)
        req.add_header('Api-Version', '2')
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw) if raw else None
            except ValueError:
                return e.code, raw.decode('utf-8', 'replace')


# ------------------------------------------------------------------------------------------ MQTT devices

class KrtDevice:
    """A KRT device: logs in with client id ProductID.DeviceID, reports its firmware (CMD 10), is notified
    on thing/ota/set (CMD 11) and acks (CMD 11 BACK OK)."""

    def __init__(self, port, pid, did, secret):
        import paho.mqtt.client as mqtt
        self.mqtt = mqtt
        self.port, self.pid, self.did, self.secret = port, pid, did, secret
        self.msgs = queue.Queue()
        self.seq = 0
        self.client = None

    def connect(self):
        mqtt = self.mqtt
        c = mqtt.Client(client_id=f'{self.pid}.{self.did}', clean_session=True, protocol=mqtt.MQTTv311)
        c.username_pw_set(self.did, self.secret)
        connected = queue.Queue()
        c.on_connect = lambda cl, ud, flags, rc: connected.put(rc)
        c.on_message = lambda cl, ud, m: self.msgs.put((m.topic, m.payload.decode('utf-8', 'replace')))
        c.connect('127.0.0.1', self.port, keepalive=30)
        c.loop_start()
        try:
            rc = connected.get(timeout=5)
        except queue.Empty:
            rc = -1
        if rc != 0:
            c.loop_stop()
            raise RuntimeError(f'{self.did}: MQTT connect refused (rc {rc})')
        self.client = c
        r, _ = c.subscribe(f'/sys/{self.pid}/{self.did}/thing/ota/set', 1)
        if r != 0:
            raise RuntimeError(f'{self.did}: subscribe failed')
        time.sleep(0.2)
        return self

    def publish(self, payload):
        info = self.client.publish(f'/sys/{self.pid}/{self.did}/thing/ota/post', json.dumps(payload), qos=1)
        info.wait_for_publish(timeout=5)

    def report(self, version):
        self.seq += 1
        self.publish({'CMD': 10, 'ID': f'{self.did}-{self.seq}', 'HW_VERSION': '1.0.0', 'FW_VERSION': version})

    def wait_notify(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                topic, payload = self.msgs.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            try:
                d = json.loads(payload)
            except ValueError:
                continue
            if topic.endswith('/thing/ota/set') and int(d.get('CMD', 0)) == 11 and 'BACK' not in d:
                return d
        return None

    def ack(self, notification):
        self.publish({'CMD': 11, 'ID': str(notification['ID']), 'BACK': 'OK'})

    def close(self):
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


# ------------------------------------------------------------------------------------------ browser

def make_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    for a in ['--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--hide-scrollbars',
              '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--disable-background-networking',
              '--disable-sync', '--disable-component-update', '--lang=en-US', '--window-size=1280,800',
              '--force-device-scale-factor=1']:
        o.add_argument(a)
    o.binary_location = os.environ.get('IOTGATE_CHROMIUM', '/usr/bin/chromium')
    o.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    service = Service(os.environ.get('IOTGATE_CHROMEDRIVER', '/usr/bin/chromedriver'))
    d = webdriver.Chrome(service=service, options=o)
    d.set_page_load_timeout(20)
    d.set_script_timeout(10)
    return d


class Browser:
    def __init__(self, driver, base, shots):
        from selenium.webdriver.common.by import By
        self.By = By
        self.d = driver
        self.base = base
        self.shots = shots
        self.urls = []
        self.viewport(1280, 800)

    def viewport(self, w, h):
        self.d.execute_cdp_cmd('Emulation.setDeviceMetricsOverride',
                               {'width': w, 'height': h, 'deviceScaleFactor': 1, 'mobile': False})

    def go(self, hash_):
        url = f'{self.base}/{hash_}'
        if self.d.current_url == url:
            self.d.refresh()  # the same URL: get() would not even fire hashchange
        else:
            self.d.get(url)
        self.urls.append(self.d.current_url)

    def el(self, css):
        return self.d.find_element(self.By.CSS_SELECTOR, css)

    def els(self, css):
        return self.d.find_elements(self.By.CSS_SELECTOR, css)

    def text(self, css):
        found = self.els(css)
        return found[0].text if found else None

    def wait_css(self, css, timeout=5):
        return wait_until(lambda: self.els(css) and self.els(css)[0].is_displayed() and self.els(css)[0], timeout)

    def wait_text(self, css, want, timeout=5):
        return wait_until(lambda: want in (self.text(css) or ''), timeout)

    def click(self, css, timeout=5):
        e = self.wait_css(css, timeout)
        if not e:
            raise RuntimeError(f'no {css} on the page')
        self.d.execute_script('arguments[0].scrollIntoView({block:"center"})', e)
        e.click()

    def fill(self, css, value):
        e = self.wait_css(css)
        if not e:
            raise RuntimeError(f'no {css} on the page')
        e.clear()
        e.send_keys(value)

    def screenshot(self, name, top=True):
        self.d.execute_script('document.querySelectorAll(".toast").forEach((t) => t.remove())')
        if top:
            self.d.execute_script('window.scrollTo(0,0)')
        time.sleep(0.4)  # let transitions settle
        path = os.path.join(self.shots, f'{name}.png')
        self.d.save_screenshot(path)
        return path

    def scroll_to(self, css):
        e = self.wait_css(css)
        if e:
            self.d.execute_script('arguments[0].scrollIntoView({block:"start"}); window.scrollBy(0,-16)', e)

    def state_counts(self):
        return {k: self.text(f'#state-{k}') for k in ('pending', 'notified', 'acked', 'succeeded', 'failed', 'timed_out')}

    def js_errors(self):
        out = []
        for e in self.d.get_log('browser'):
            msg = e.get('message', '')
            if e.get('level') == 'SEVERE' and 'Failed to load resource' not in msg:
                out.append(msg)
        return out


# ------------------------------------------------------------------------------------------ the scenario

MD5 = '0123456789abcdef0123456789abcdef'


def find_api(arg):
    for cand in [arg, os.environ.get('IOTGATE_API'), os.path.join(ROOT, 'build', 'iotgate-api'),
                 os.path.join(ROOT, 'build-api', 'iotgate-api')]:
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return None


def find_plugin(arg):
    for cand in [arg, os.environ.get('IOTGATE_PLUGIN'), os.path.join(ROOT, 'build', 'iotgate.so'),
                 os.path.join(ROOT, 'build-web', 'iotgate.so')]:
        if cand and os.path.isfile(cand):
            return os.path.abspath(cand)
    return None


def wait_port(port, timeout):
    def up():
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.3):
                return True
        except OSError:
            return False
    return wait_until(up, timeout, 0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('api', nargs='?', help='the iotgate-api binary')
    ap.add_argument('--api', dest='api_opt')
    ap.add_argument('--plugin', help='iotgate.so')
    ap.add_argument('--web', default=os.path.join(ROOT, 'web'))
    ap.add_argument('--screenshots', default=os.environ.get('IOTGATE_SCREENSHOTS', os.path.join(ROOT, 'build', 'screenshots')))
    ap.add_argument('--keep', action='store_true', help='keep the work directory (logs)')
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a ctest timeout still cleans up (finally)
    try:
        import selenium  # noqa: F401
        import paho.mqtt.client  # noqa: F401
    except ImportError as e:
        print(f'cannot run: {e} (Debian: apt-get install python3-selenium python3-paho-mqtt chromium chromium-driver; '
              f'run it with /usr/bin/python3, this is {sys.executable})', flush=True)
        check('prerequisites: python3-selenium and python3-paho-mqtt', False)
        print(f'{len(PASSED)} passed, {len(FAILED)} failed')
        return 1
    api_bin = find_api(args.api_opt or args.api)
    plugin = find_plugin(args.plugin)
    if not api_bin or not plugin:
        print(f'cannot run: iotgate-api {"found" if api_bin else "missing"}, iotgate.so {"found" if plugin else "missing"} '
              '(build them, or pass --api / --plugin)', flush=True)
        check('prerequisites: iotgate-api and iotgate.so built', False)
        print(f'{len(PASSED)} passed, {len(FAILED)} failed')
        return 1
    os.makedirs(args.screenshots, exist_ok=True)
    for f in os.listdir(args.screenshots):
        if f.endswith('.png'):
            os.remove(os.path.join(args.screenshots, f))

    work = tempfile.mkdtemp(prefix='iotgate-browser-')
    procs = Procs(work)
    driver = None
    devices = []
    try:
        driver = run(args, api_bin, plugin, work, procs, devices)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        check(f'scenario ran to the end ({type(e).__name__}: {e})', False)
        for name in ('api', 'mosquitto', 'broker'):
            tail = procs.log(name)[-3000:]
            if tail:
                print(f'--- {name} log (tail) ---\n{tail}', flush=True)
    finally:
        for dev in devices:
            try:
                dev.close()
            except Exception:  # noqa: BLE001
                pass
        if driver is not None:
            try:
                driver.quit()
            except Exception:  # noqa: BLE001
                pass
        procs.stop_all()
        if args.keep or FAILED:
            print(f'work directory (logs): {work}')
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f'screenshots: {args.screenshots}')
    print(f'{len(PASSED)} passed, {len(FAILED)} failed')
    return 0 if not FAILED and PASSED else 1


def run(args, api_bin, plugin, work, procs, devices):
    # ---------------- services
    redis_port, mqtt_port, http_port = free_port(), free_port(), free_port()
    procs.start('redis', ['redis-server', '--port', str(redis_port), '--bind', '127.0.0.1', '--save', '',
                          '--appendonly', 'no', '--dir', work, '--protected-mode', 'no'])
    if not wait_port(redis_port, 10):
        raise RuntimeError('redis-server did not start')
    prefix = 'iotgate:'
    redis_uri = f'redis://127.0.0.1:{redis_port}/0'
    cli_env = dict(os.environ, IOTGATE_REDIS=redis_uri, IOTGATE_PREFIX=prefix, IOTGATE_OPERATOR='setup')

    def cli(*a):
        r = subprocess.run([os.path.join(ROOT, 'scripts', 'iotgate'), *a], env=cli_env, capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f'iotgate {" ".join(a)}: {r.stderr.strip()}')
        return r.stdout

    cli('product', 'add', 'krt', '--product-id', 'KP1', '--product-secret', 'product-secret-1')
    secrets = {}
    for did in ('KD1', 'KD2', 'KD3', 'KD4'):
        secrets[did] = f'{did.lower()}-secret-1'
        cli('device', 'add', 'krt', '--product-id', 'KP1', '--device-id', did, '--secret', secrets[did])
    cli('product', 'add', 'lierda', '--openid', '7ED01E2A', '--product-id', 'AA30C505', '--auth-type', '1')
    for eui in ('20MQTTJ000121', '20MQTTJ000122', '20MQTTJ000123'):
        cli('device', 'add', 'lierda', '--product-id', 'AA30C505', '--node-eui', eui)
    cli('product', 'add', 'emu', '--product-key', 'PK1')
    alice = json.loads(cli('token', 'add', '--member', 'alice'))['token']
    bob_made = json.loads(cli('token', 'add', '--member', 'bob'))
    bob = bob_made['token']

    # a private copy: a rebuild of the plugin during the run cannot pull it from under the broker
    plugin_copy = os.path.join(work, 'iotgate.so')
    shutil.copyfile(plugin, plugin_copy)
    conf = os.path.join(work, 'mosquitto.conf')
    with open(conf, 'w') as f:
        f.write('per_listener_settings false\n'
                f'listener {mqtt_port} 127.0.0.1\n'
                'allow_anonymous false\n'
                'persistence false\n'
                'set_tcp_nodelay true\n'
                f'log_dest file {os.path.join(work, "broker.log")}\nlog_type all\nconnection_messages true\n'
                + ('user root\n' if os.geteuid() == 0 else '') +
                f'plugin {plugin_copy}\n'
                'plugin_opt_redis_host 127.0.0.1\n'
                f'plugin_opt_redis_port {redis_port}\n'
                f'plugin_opt_key_prefix {prefix}\n')
    broker = procs.start('mosquitto', [shutil.which('mosquitto') or '/usr/sbin/mosquitto', '-c', conf])
    if not wait_until(lambda: 'iotgate: loaded' in procs.log('broker') or broker.poll() is not None, 10) \
            or broker.poll() is not None:
        raise RuntimeError('mosquitto with the plugin did not start')

    api_proc = procs.start('api', [api_bin, '--listen', f'127.0.0.1:{http_port}', '--redis', redis_uri, '--prefix', prefix,
                        '--web', os.path.abspath(args.web)])
    if not wait_port(http_port, 10) or api_proc.poll() is not None:
        raise RuntimeError('iotgate-api did not start')
    base = f'http://127.0.0.1:{http_port}'
    api = Api(base)
    st, me = api.call('GET', '/v2/me', token=alice)
    if st != 200:
        raise RuntimeError(f'GET /v2/me as alice: {st} {me}')

    # ---------------- devices on line before the console opens: KD1, KD2 on 1.0, KD4 on 1.0 (not in the task)
    for did in ('KD1', 'KD2', 'KD4'):
        dev = KrtDevice(mqtt_port, 'KP1', did, secrets[did]).connect()
        devices.append(dev)
        dev.report('1.0')
    kd1, kd2, kd4 = devices
    wait_until(lambda: api.call('GET', '/v2/products/KP1/devices?offset=0&limit=50', token=alice)[1]['list'][0].get('versions'), 5)

    # ---------------- browser
    driver = make_driver()
    b = Browser(driver, base, args.screenshots)

    b.go('')
    check('sign-in page shown', bool(b.wait_css('#token')))
    b.screenshot('01-sign-in')
    b.fill('#token', 'not-a-token')
    b.click('#signin-submit')
    check('a wrong token is refused with a message', bool(b.wait_text('#signin-error', 'not accepted')))
    b.fill('#token', alice)
    b.click('#signin-submit')
    check('alice signs in and sees her name', bool(b.wait_text('#member', 'alice')))
    check('the token is kept in sessionStorage', driver.execute_script('return sessionStorage.getItem("iotgate.token")') == alice)

    # ---------------- products and devices
    b.go('#/products')
    check('products table lists KP1 with its 4 devices', bool(wait_until(
        lambda: [r for r in b.els('#products-table tbody tr[data-key="KP1"] td.num') if r.text == '4'], 5)))
    check('products table lists the Lierda product', bool(b.wait_text('#products-table', 'AA30C505')))
    b.screenshot('02-products')

    b.go('#/products/KP1')
    row = lambda did: [r for r in b.els('#devices-table tbody tr') if r.get_attribute('data-key') == did]  # noqa: E731
    check('devices table shows KD1 online with its reported version 1.0', bool(wait_until(
        lambda: row('KD1') and 'Online' in row('KD1')[0].text and '1.0' in row('KD1')[0].text, 5)))
    check('KD3 (never connected) shows offline and "never"', bool(wait_until(
        lambda: row('KD3') and 'Offline' in row('KD3')[0].text and 'never' in row('KD3')[0].text, 5)))
    b.click('#devices-table tr[data-key="KD4"] button[data-action="disable"]')
    check('disabling KD4 from the console shows it disabled', bool(wait_until(
        lambda: row('KD4') and 'Disabled' in row('KD4')[0].text and 'Offline' in row('KD4')[0].text, 6)))
    st, page = api.call('GET', '/v2/products/KP1/devices?offset=0&limit=50', token=alice)
    kd4_state = [d for d in page['list'] if d['device_id'] == 'KD4'][0]
    check('the API reports KD4 disabled', str(kd4_state.get('enabled')).lower() in ('false', '0'), kd4_state)
    b.screenshot('03-devices')

    # ---------------- the task form: inline errors, then a test task
    b.go('#/tasks/new?product=KP1')
    b.wait_css('#task-form')
    b.click('#create-task')
    check('an empty form shows inline errors', bool(b.wait_css('#err-name')) and 'name' in (b.text('#err-name') or '').lower()
          and len(b.els('.field.invalid')) >= 5 and b.el('#form-alert').is_displayed())
    b.fill('#f-name', 'x' * 33)
    b.fill('#f-target_version_md5', 'not-an-md5')
    check('a 33-character name and a bad MD5 are flagged', bool(wait_until(
        lambda: '32' in (b.text('#err-name') or '') and 'hex' in (b.text('#err-target_version_md5') or ''), 3)))
    b.screenshot('04-task-form-errors')

    b.fill('#f-name', 'fw-2.0 canary')
    b.fill('#f-description', 'Canary rollout of firmware 2.0 to three test devices')
    b.click('#f-tag_type input[value="1"]')
    for did in ('KD1', 'KD2', 'KD3'):
        wait_until(lambda: b.els(f'#f-device_list input[value="{did}"]'), 5)
        b.click(f'#f-device_list input[value="{did}"]')
    b.fill('#f-from_version', '1.0')
    b.fill('#f-target_version', '2.0')
    b.fill('#f-target_version_url', 'http://fw.example/2.0.bin')
    b.fill('#f-target_version_md5', MD5)
    b.fill('#f-target_version_size', '4096')
    b.click('#create-task')
    ok = wait_until(lambda: '#/tasks/' in driver.current_url and '/new' not in driver.current_url, 6)
    check('creating a test task opens its page', bool(ok), driver.current_url)
    task_id = driver.current_url.rsplit('/', 1)[-1]
    check('the new task is stopped and tagged Test', bool(b.wait_text('#task-status', 'Stopped')) and 'Test' in (b.text('#task-head') or ''))

    # the same type + identify + from-version again: the server refuses, the form says why
    b.go('#/tasks/new?product=KP1')
    b.wait_css('#task-form')
    b.fill('#f-name', 'duplicate')
    b.fill('#f-from_version', '1.0')
    b.fill('#f-target_version', '2.0')
    b.fill('#f-target_version_url', 'http://fw.example/2.0.bin')
    b.fill('#f-target_version_md5', MD5)
    b.fill('#f-target_version_size', '4096')
    b.click('#create-task')
    check('a server refusal (duplicate task) is shown on the form', bool(b.wait_text('#form-alert', 'refused', 6))
          and b.el('#form-alert').is_displayed() and '/new' in driver.current_url, b.text('#form-alert'))
    check('the refusal is also a toast', bool(b.wait_css('.toast.error', 3)))

    # ---------------- start the task and watch the rollout
    b.go(f'#/tasks/{task_id}')
    b.click('#btn-start')
    check('Start makes the task Running', bool(b.wait_text('#task-status', 'Running', 6)))
    check('op-log records the start', bool(b.wait_text('#task-oplog', 'start', 5)), b.text('#task-oplog'))

    def api_counts():
        st, p = api.call('GET', f'/v2/upgrade/firmware/tasks/{task_id}/progress', token=alice)
        return {k: int(v) for k, v in p['devices_by_state'].items()} if st == 200 else None

    def dom_follows(label, want):
        """want: {state: n} the API must reach; then the page must show it within 2 s by itself."""
        reached = wait_until(lambda: all((api_counts() or {}).get(k) == v for k, v in want.items()), 8, 0.1)
        if not check(f'{label}: the plugin recorded it (API progress {want})', bool(reached), api_counts()):
            return False
        t0 = time.monotonic()
        shown = wait_until(lambda: all(b.text(f'#state-{k}') == str(v) for k, v in want.items()), 2.0, 0.05)
        check(f'{label}: the progress view shows it within 2 s without a reload', bool(shown),
              f'{b.state_counts()} after {time.monotonic() - t0:.2f}s')
        return shown

    check('before the rollout, the three listed devices count as pending', bool(dom_follows('before reports', {'pending': 3, 'notified': 0})))
    time.sleep(0.8)  # the started task reaches the broker
    notes = {}
    for dev in (kd1, kd2):
        for _ in range(4):  # a device reports again until the running task notifies it
            dev.report('1.0')
            n = dev.wait_notify(2.5)
            if n:
                notes[dev.did] = n
                break
    check('KD1 and KD2 were notified over MQTT (CMD 11 with the firmware URL)',
          set(notes) == {'KD1', 'KD2'} and all(n.get('URL') == 'http://fw.example/2.0.bin' for n in notes.values()), notes)
    dom_follows('notified', {'notified': 2, 'pending': 1})
    kd1.ack(notes['KD1'])
    dom_follows('KD1 acked', {'acked': 1, 'notified': 1})
    kd2.ack(notes['KD2'])
    dom_follows('KD2 acked', {'acked': 2, 'notified': 0})
    # KD1 reboots on 2.0 (success); KD2 comes back on 1.0 (the install failed)
    kd1.close()
    kd1.connect()
    kd1.report('2.0')
    dom_follows('KD1 on the target version', {'succeeded': 1, 'acked': 1})
    kd2.close()
    kd2.connect()
    kd2.report('1.0')
    final = {'pending': 1, 'notified': 0, 'acked': 0, 'succeeded': 1, 'failed': 1, 'timed_out': 0}
    dom_follows('rollout finished', final)
    check('every state count on the page equals the API', b.state_counts() == {k: str(v) for k, v in (api_counts() or {}).items()},
          b.state_counts())
    check('upgrade count shows 1 device', bool(b.wait_text('#upgrade-count', '1 device', 5)), b.text('#upgrade-count'))
    b.screenshot('05-task-progress')

    # version distribution chart: KD1 on 2.0, KD2 on 1.0
    bars = lambda: {e.get_attribute('data-version'): e.get_attribute('data-devices') for e in b.els('#version-chart g.bar')}  # noqa: E731
    check('the version chart has a bar for 2.0 and one for 1.0', bool(wait_until(
        lambda: bars().get('2.0') == '1' and bars().get('1.0') == '1', 6)), bars())
    b.scroll_to('#chart-card')
    b.screenshot('06-version-chart', top=False)

    # logs of the task: KD1 sent + done, KD2 sent
    check('the task\'s OTA logs show KD1 done and both sent', bool(wait_until(
        lambda: len(b.els('#task-ota-logs tbody tr')) >= 3 and 'Done' in b.text('#task-ota-logs'), 6)), b.text('#task-ota-logs'))
    b.scroll_to('#ota-logs-card')
    b.screenshot('07-task-logs', top=False)

    b.go('#/logs')
    check('the OTA logs page lists the rollout', bool(wait_until(lambda: len(b.els('#logs-table tbody tr')) >= 3, 6)))
    b.fill('#log-device', 'KD1')
    check('filtering the OTA logs by device', bool(wait_until(
        lambda: b.els('#logs-table tbody tr') and all('KD1' in r.text for r in b.els('#logs-table tbody tr')), 5)))
    b.click('#log-clear')
    wait_until(lambda: len(b.els('#logs-table tbody tr')) >= 3, 5)
    b.screenshot('08-ota-logs')

    # ---------------- review: production task, alice submits to bob, alice cannot approve, bob can
    st, prod = api.call('POST', '/v2/upgrade/firmware/task', {
        'product_id': 'KP1', 'name': 'fw-2.0 fleet', 'description': 'Whole fleet after the canary', 'type': 1,
        'from_version': '0.9', 'target_version': '2.0', 'target_version_url': 'http://fw.example/2.0.bin',
        'target_version_md5': MD5, 'target_version_size': '4096', 'tag_type': 0, 'task_type': 0,
        'scope': {'category': 0, 'device_list': []}}, token=alice)
    check('a production task is created (waiting)', st == 200 and str(prod.get('status')) == '2', (st, prod))
    prod_id = str(prod.get('id'))
    b.go('#/tasks?product=KP1')
    check('the task list shows both tasks', bool(wait_until(lambda: len(b.els('#tasks-table tbody tr')) == 2, 5)))
    b.screenshot('09-task-list')

    # ---------------- escaping: API text lands as text, never as markup
    evil = '<img src=x onerror=__xss=1>'
    st, made = api.call('POST', '/v2/upgrade/firmware/task', {
        'product_id': 'KP1', 'name': evil, 'description': '<script>__xss=2</script>', 'type': 1,
        'from_version': '0.8', 'target_version': '2.0', 'target_version_url': 'http://fw.example/2.0.bin',
        'target_version_md5': MD5, 'target_version_size': '4096', 'tag_type': 0, 'task_type': 0,
        'scope': {'category': 0, 'device_list': []}}, token=alice)
    check('a task with markup in its name is created through the API', st == 200, (st, made))
    b.go('#/tasks?product=KP1')
    shown = wait_until(lambda: evil in (b.text('#tasks-table') or ''), 5)
    check('markup in API text is shown as text, not run', bool(shown) and not b.els('#tasks-table img')
          and driver.execute_script('return typeof window.__xss') == 'undefined')
    evil_id = str((made or {}).get('id'))
    b.go(f'#/tasks/{evil_id}')
    check('markup in the task view title is text too', bool(b.wait_text('#task-head h1', evil))
          and not b.els('#task-head img') and driver.execute_script('return typeof window.__xss') == 'undefined')

    b.go(f'#/tasks/{prod_id}')
    b.fill('#reviewer', 'bob')
    b.click('#btn-submit-review')
    check('submitting for review names bob', bool(b.wait_text('#task-status', 'In review', 6))
          and bool(b.wait_text('#task-reviewer', 'bob')))
    approve = b.wait_css('#btn-approve')
    check('alice (not the reviewer) sees Approve disabled', bool(approve) and approve.get_attribute('aria-disabled') == 'true')
    check('alice is told why: only bob can review', 'Only bob' in (b.text('#review-why') or ''), b.text('#review-why'))
    b.click('#btn-approve')
    time.sleep(1.2)
    check('clicking it anyway changes nothing', 'In review' in (b.text('#task-status') or ''))
    st, body = api.call('PUT', f'/v2/upgrade/firmware/tasks/{prod_id}/audit', {'audit_result': 1}, token=alice)
    check('the API refuses alice\'s approval (403)', st == 403, (st, body))
    b.screenshot('10-review-not-reviewer')

    b.click('#signout')
    check('sign-out returns to the sign-in page and forgets the token', bool(b.wait_css('#token'))
          and driver.execute_script('return sessionStorage.getItem("iotgate.token")') is None)
    b.fill('#token', bob)
    b.click('#signin-submit')
    check('bob signs in', bool(b.wait_text('#member', 'bob')))
    b.go(f'#/tasks/{prod_id}')
    approve = b.wait_css('#btn-approve')
    check('bob (the reviewer) sees Approve enabled', bool(approve) and approve.get_attribute('aria-disabled') is None)
    b.click('#btn-approve')
    check('bob\'s approval makes the task Running', bool(b.wait_text('#task-status', 'Running', 6)))
    check('op-log records the approval by bob', bool(wait_until(
        lambda: 'bob' in (b.text('#task-oplog') or '') and 'approv' in (b.text('#task-oplog') or '').lower(), 5)), b.text('#task-oplog'))

    # bob rejects the other task alice submitted to him: back to waiting
    st, body = api.call('PUT', f'/v2/upgrade/firmware/tasks/{evil_id}/submit-audit', {'audit_member_id': 'bob'}, token=alice)
    check('alice submits a second task to bob through the API', st == 200, (st, body))
    b.go(f'#/tasks/{evil_id}')
    b.click('#btn-reject')
    check('bob\'s rejection sends it back to Waiting', bool(b.wait_text('#task-status', 'Waiting', 6)))

    # ---------------- test -> production
    b.go(f'#/tasks/{task_id}')
    b.click('#btn-stop')
    check('Stop makes the canary Stopped', bool(b.wait_text('#task-status', 'Stopped', 6)))
    b.click('#btn-to-production')
    check('test -> production makes it a waiting production task', bool(b.wait_text('#task-status', 'Waiting', 6))
          and 'Production' in (b.text('#task-head') or ''))

    # ---------------- large screen, token hygiene, console errors
    b.viewport(1920, 1080)
    b.go(f'#/tasks/{task_id}')
    b.wait_css('#state-succeeded')
    wait_until(lambda: b.text('#state-succeeded') == '1', 3)
    b.screenshot('11-task-1920x1080')
    b.go('#/products/KP1')
    wait_until(lambda: b.els('#devices-table tbody tr'), 5)
    b.screenshot('12-devices-1920x1080')
    b.viewport(1280, 800)
    cli('token', 'revoke', str(bob_made['id']))
    b.go('#/products')
    check('a revoked token ends the session: back to sign-in with a message', bool(b.wait_text('#signin-error', 'no longer accepted', 6))
          and driver.execute_script('return sessionStorage.getItem("iotgate.token")') is None, b.text('#signin-error'))
    check('no token in any URL the console visited', all(alice not in u and bob not in u for u in b.urls + [driver.current_url]))
    logs = procs.log('api') + procs.log('broker')
    check('no token in the server logs', alice not in logs and bob not in logs)
    errors = b.js_errors()
    check('no JavaScript errors in the browser console', not errors, errors[:5])
    return driver


if __name__ == '__main__':
    sys.exit(main())
