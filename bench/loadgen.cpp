// iotgate_loadgen: the MQTT load generator of the iotgate benchmarks (bench/run.sh).
//
// Many libmosquitto clients per thread: each thread owns an epoll set over its clients' sockets and drives them
// with mosquitto_loop_read / mosquitto_loop_write (libmosquitto's own select() loop handles one client only).
// Devices are Lierda V2 devices of one product, NodeEui = <eui-prefix><index, 8 digits>, with DeviceSecrets
// derived from the index, so `populate` (Redis bulk load) and the login modes agree without talking to Redis.
//
// Modes:
//   populate   Redis protocol (RESP) for `redis-cli --pipe`: the product and N devices (docs/redis-schema.md)
//   passwd     user:password lines for `mosquitto_passwd -U` (the password_file baseline)
//   connect    N logins, C in flight at a time; connections/second to an accepted CONNACK
//   publish    K devices publish on their own topic while one subscriber on /sys/# counts deliveries (raw I/O
//              after the logins: RawIo)
//   hold       keep N sessions connected and idle; report the broker's RSS before and after
//   ota        K devices send Lierda firmware reports, at a fixed rate and then as fast as they are acked:
//              report->ack and report->ota_notify latencies, reports/s; --echo plays the platform (plain broker)
// Every mode prints one JSON line on stdout and a human-readable line on stderr. Every loop is bounded in time.
#include <mosquitto.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <rapidjson/document.h>

#include "iotgate/crypto.h"
#include "iotgate/lierda/lierda.h"
#include "iotgate/json.h"

namespace {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using namespace std::chrono_literals;

double seconds_between(TimePoint a, TimePoint b) { return std::chrono::duration<double>(b - a).count(); }
TimePoint after(TimePoint t, double seconds) {
  return t + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}
int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "iotgate_loadgen: %s\n", msg.c_str());
  std::exit(2);
}

// ---------------------------------------------------------------------------------------------------------
// Options: `--name value` pairs, plus a few flags without a value.

class Options {
 public:
  Options(int argc, char** argv, int first) {
    static const std::set<std::string> kFlags = {"--keep", "--quiet", "--echo", "--spin"};
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) die("unexpected argument '" + a + "'");
      if (kFlags.count(a)) {
        values_[a.substr(2)] = "1";
        continue;
      }
      if (i + 1 >= argc) die("option " + a + " needs a value");
      values_[a.substr(2)] = argv[++i];
    }
  }
  std::string str(const std::string& name, const std::string& def) {
    used_.insert(name);
    auto it = values_.find(name);
    return it == values_.end() ? def : it->second;
  }
  long num(const std::string& name, long def) {
    std::string s = str(name, std::to_string(def));
    char* end = nullptr;
    long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end) die("option --" + name + ": not an integer: " + s);
    return v;
  }
  double real(const std::string& name, double def) {
    std::ostringstream d;
    d << def;
    std::string s = str(name, d.str());
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end) die("option --" + name + ": not a number: " + s);
    return v;
  }
  bool flag(const std::string& name) { return str(name, "") == "1"; }
  void check_all_used() const {
    for (const auto& [k, v] : values_)
      if (!used_.count(k)) die("unknown option --" + k + " for this mode");
  }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> used_;
};

// ---------------------------------------------------------------------------------------------------------
// The bench fleet: one Lierda product and devices named by index.

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

enum class Login { v2t1, v2t0, userpass, anon };

Login parse_login(const std::string& s) {
  if (s == "v2t1") return Login::v2t1;
  if (s == "v2t0") return Login::v2t0;
  if (s == "userpass") return Login::userpass;
  if (s == "anon") return Login::anon;
  die("--login must be v2t1, v2t0, userpass or anon");
}

struct Creds {
  std::string client_id;
  std::optional<std::string> username, password;
};

struct Fleet {
  std::string openid, product, key, eui_prefix;
  uint64_t seed = 0;

  explicit Fleet(Options& o)
      : openid(o.str("openid", "BE5C0001")),
        product(o.str("product-id", "BE5C0D01")),
        key(o.str("product-key", "B0E5C0DEB0E5C0DEB0E5C0DEB0E5C0DE")),
        eui_prefix(o.str("eui-prefix", "BENCH")),
        seed(static_cast<uint64_t>(o.num("seed", 20240601))) {}

  std::string eui(long i) const {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%08ld", eui_prefix.c_str(), i);
    return buf;
  }
  std::string secret(long i) const {
    char buf[40];
    uint64_t a = splitmix64(seed * 0x100000001B3ull + static_cast<uint64_t>(i) * 2);
    uint64_t b = splitmix64(seed * 0x100000001B3ull + static_cast<uint64_t>(i) * 2 + 1);
    std::snprintf(buf, sizeof buf, "%016" PRIX64 "%016" PRIX64, a, b);
    return buf;
  }
  std::string username(long i) const { return openid + "-" + product + "-" + eui(i); }
  std::string topic(long i, const std::string& leaf) const {
    return "/sys/" + openid + "/" + product + "/" + eui(i) + "/" + leaf;
  }
  std::string password(long i, std::optional<int64_t> ts) const {
    auto pw = iotgate::lierda_v2_password(secret(i), product, eui(i), key, ts);
    if (!pw) die("cannot compute a V2 password (bad secret?)");
    return *pw;
  }
  // The same CONNECT for every broker: a V2 client id; the plain broker ignores username and password.
  Creds creds(long i, Login kind, int64_t ts) const {
    Creds c;
    int type = kind == Login::v2t1 || kind == Login::anon ? 1 : 0;
    c.client_id = "V2_" + product + "." + eui(i) + "_" + std::to_string(type) + "_" + std::to_string(ts);
    if (kind == Login::anon) return c;
    c.username = username(i);
    c.password = password(i, kind == Login::v2t1 ? std::optional<int64_t>(ts) : std::nullopt);
    return c;
  }
};

// ---------------------------------------------------------------------------------------------------------
// /proc readings

long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

// utime + stime of a process (all threads) or of one thread, in milliseconds; -1 when unreadable.
double cpu_ms(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::string s;
  std::getline(in, s);
  size_t close = s.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return 1000.0 * static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Busy CPU time of the whole machine (all CPUs), in milliseconds.
double system_busy_ms() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long v[10] = {};
  in >> cpu;
  for (auto& x : v) in >> x;
  unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];  // user nice system irq softirq steal
  return 1000.0 * static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// --cpu name=pid,...: CPU time of each process (name) and of its main thread (name_main) over an interval, plus
// this load generator (loadgen) and everything else on the machine (others: processes not ours; approximate).
struct CpuWatch {
  std::vector<std::pair<std::string, pid_t>> pids;
  std::map<std::string, double> start;
  explicit CpuWatch(const std::string& spec) {
    std::istringstream in(spec);
    std::string item;
    while (std::getline(in, item, ',')) {
      size_t eq = item.find('=');
      if (eq == std::string::npos) die("--cpu wants name=pid,...");
      pids.emplace_back(item.substr(0, eq), static_cast<pid_t>(std::atol(item.c_str() + eq + 1)));
    }
  }
  // Threads of this load generator shown on their own (their time is part of "loadgen" too).
  std::vector<std::pair<std::string, pid_t>> own_threads;
  std::map<std::string, double> read() const {
    std::map<std::string, double> out;
    for (const auto& [name, pid] : pids) {
      std::string p = "/proc/" + std::to_string(pid);
      out[name] = cpu_ms(p + "/stat");
      out[name + "_main"] = cpu_ms(p + "/task/" + std::to_string(pid) + "/stat");
    }
    for (const auto& [name, tid] : own_threads) out[name] = cpu_ms("/proc/self/task/" + std::to_string(tid) + "/stat");
    out["loadgen"] = cpu_ms("/proc/self/stat");
    out["system"] = system_busy_ms();
    return out;
  }
  void begin() { start = read(); }
  // CPU time (ms) of processes not ours between two readings.
  double others_between(const std::map<std::string, double>& a, const std::map<std::string, double>& b) const {
    double others = b.at("system") - a.at("system") - (b.at("loadgen") - a.at("loadgen"));
    for (const auto& [name, pid] : pids) others -= b.at(name) - a.at(name);
    return std::max(0.0, others);
  }
  // CPU time (ms) of each reading since begin(), with "others" instead of "system".
  std::map<std::string, double> since() const {
    auto now = read();
    std::map<std::string, double> d;
    for (const auto& [k, v] : now) {
      auto it = start.find(k);
      if (it != start.end() && v >= 0 && it->second >= 0) d[k] = v - it->second;
    }
    double others = d["system"] - d["loadgen"];
    for (const auto& [name, pid] : pids) others -= d[name];
    d["others"] = std::max(0.0, others);
    d.erase("system");
    return d;
  }
  std::string json_since() const { return json(since()); }
  static std::string json(const std::map<std::string, double>& d) {
    std::ostringstream o;
    o << "{";
    bool first = true;
    for (const auto& [k, v] : d) {
      o << (first ? "" : ",") << "\"" << k << "\":" << std::llround(v);
      first = false;
    }
    o << "}";
    return o.str();
  }
};

// ---------------------------------------------------------------------------------------------------------
// Signals: SIGINT/SIGTERM/SIGUSR1 are blocked in every thread and taken by one signal thread.

std::atomic<bool> g_stop{false};
std::atomic<pid_t> g_stopped_pid{0};  // a process we SIGSTOPped and must SIGCONT whatever happens

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  return set;
}

void resume_stopped() {
  pid_t p = g_stopped_pid.exchange(0);
  if (p > 0) ::kill(p, SIGCONT);
}

// A thread of its own takes the signals: SIGUSR1 asks for a clean finish (g_stop); SIGINT / SIGTERM resume a
// process we stopped and end at once.
void start_signal_thread() {
  std::thread([] {
    sigset_t set = handled_signals();
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGUSR1) {
        g_stop = true;
        continue;
      }
      resume_stopped();
      std::_Exit(128 + sig);
    }
  }).detach();
}

// Sleeps until `t`; returns true when asked to stop first.
bool sleep_until(TimePoint t) {
  while (!g_stop) {
    auto left = t - Clock::now();
    if (left <= Clock::duration::zero()) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(left, 20ms));
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Many clients per thread.

struct Worker;

struct Conn {
  Worker* worker = nullptr;
  mosquitto* mosq = nullptr;
  int fd = -1;           // registered in the worker's epoll set
  uint32_t events = 0;   // registered events
  long device = -1;
  TimePoint started;
  bool connack = false;  // CONNACK seen
  int connack_rc = -1;
  bool closed = false;   // libmosquitto closed the socket (on_disconnect)
  bool ready = false;    // on the worker's ready list
  enum class Phase { inflight, done, kept } phase = Phase::inflight;  // connection storms
  bool suback = false;
  int inflight = 0;      // QoS 1 publishes waiting for PUBACK
  std::string topic;
};

struct Worker {
  int ep = -1;
  std::string host;
  int port = 0;
  int keepalive = 600;
  int protocol = MQTT_PROTOCOL_V311;
  int send_maximum = 0;      // QoS 1 messages a client may have unacknowledged; 0: libmosquitto's default (20)
  bool tcp_nodelay = false;  // TCP_NODELAY on the clients' sockets
  std::vector<Conn*> ready;  // connack / closed since last looked at
  std::function<void(Conn*, const mosquitto_message*)> on_message;
  std::atomic<long>* acked = nullptr;  // QoS 1 PUBACKs, when set

  Worker() {
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die(std::string("epoll_create1: ") + std::strerror(errno));
  }
  ~Worker() {
    if (ep >= 0) ::close(ep);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  static void cb_connect(mosquitto*, void* obj, int rc) {
    auto* c = static_cast<Conn*>(obj);
    c->connack = true;
    c->connack_rc = rc;
    c->worker->mark(c);
  }
  static void cb_disconnect(mosquitto*, void* obj, int) {
    auto* c = static_cast<Conn*>(obj);
    c->closed = true;
    c->fd = -1;  // libmosquitto closed it: the kernel dropped it from the epoll set
    c->worker->mark(c);
  }
  static void cb_publish(mosquitto*, void* obj, int) {
    auto* c = static_cast<Conn*>(obj);
    if (c->inflight > 0) {
      c->inflight--;
      if (c->worker->acked) c->worker->acked->fetch_add(1, std::memory_order_relaxed);
    }
  }
  static void cb_subscribe(mosquitto*, void* obj, int, int, const int*) { static_cast<Conn*>(obj)->suback = true; }
  static void cb_message(mosquitto*, void* obj, const mosquitto_message* m) {
    auto* c = static_cast<Conn*>(obj);
    if (c->worker->on_message) c->worker->on_message(c, m);
  }

  void mark(Conn* c) {
    if (!c->ready) {
      c->ready = true;
      ready.push_back(c);
    }
  }

  // Starts a connection; nullptr when libmosquitto refused at once (counted by the caller as a failure).
  Conn* open(long device, const Creds& cr) {
    auto* c = new Conn;
    c->worker = this;
    c->device = device;
    c->started = Clock::now();
    c->mosq = mosquitto_new(cr.client_id.c_str(), true, c);
    if (!c->mosq) {
      delete c;
      return nullptr;
    }
    mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, protocol);
    if (send_maximum > 0) mosquitto_int_option(c->mosq, MOSQ_OPT_SEND_MAXIMUM, send_maximum);
    if (tcp_nodelay) mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(c->mosq, cb_connect);
    mosquitto_disconnect_callback_set(c->mosq, cb_disconnect);
    mosquitto_publish_callback_set(c->mosq, cb_publish);
    mosquitto_subscribe_callback_set(c->mosq, cb_subscribe);
    mosquitto_message_callback_set(c->mosq, cb_message);
    if (cr.username) mosquitto_username_pw_set(c->mosq, cr.username->c_str(), cr.password ? cr.password->c_str() : nullptr);
    // Loopback connects complete at once or are pending (EINPROGRESS); CONNECT is written when writable.
    int rc = mosquitto_connect_async(c->mosq, host.c_str(), port, keepalive);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING) {
      mosquitto_destroy(c->mosq);
      delete c;
      return nullptr;
    }
    sync(c);
    return c;
  }

  // Registers the events this client needs now: always readable, writable while libmosquitto has output queued.
  void sync(Conn* c) {
    if (c->closed) return;
    int fd = mosquitto_socket(c->mosq);
    if (fd < 0) {
      c->fd = -1;
      return;
    }
    uint32_t want = EPOLLIN | (mosquitto_want_write(c->mosq) ? EPOLLOUT : 0u);
    if (c->fd != fd) {
      epoll_event ev{};
      ev.events = want;
      ev.data.ptr = c;
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die(std::string("epoll_ctl ADD: ") + std::strerror(errno));
      c->fd = fd;
      c->events = want;
    } else if (want != c->events) {
      epoll_event ev{};
      ev.events = want;
      ev.data.ptr = c;
      epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
      c->events = want;
    }
  }

  // Waits up to timeout_ms for socket events and handles them. Conns are never freed in here.
  int poll(int timeout_ms) {
    epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(evs[i].data.ptr);
      if (c->closed) continue;
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (int k = 0; k < 256 && !c->closed; ++k) {
          errno = 0;
          int rc = mosquitto_loop_read(c->mosq, 1);
          if (rc != MOSQ_ERR_SUCCESS || c->closed || mosquitto_socket(c->mosq) < 0) break;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        }
      }
      if (!c->closed && (evs[i].events & EPOLLOUT)) mosquitto_loop_write(c->mosq, 1);
      sync(c);
    }
    return n;
  }

  // Sends DISCONNECT (written at once on an idle socket; libmosquitto then closes it).
  void disconnect(Conn* c) {
    if (c->closed) return;
    mosquitto_disconnect(c->mosq);
    sync(c);
  }

  // Takes the conn's socket out of this worker's epoll set: the caller reads and writes it from now on (RawIo).
  // libmosquitto still owns it and closes it in destroy().
  int release(Conn* c) {
    if (c->closed || c->fd < 0) return -1;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
    int fd = c->fd;
    c->fd = -1;
    return fd;
  }

  void destroy(Conn* c) {
    if (c->ready) ready.erase(std::remove(ready.begin(), ready.end(), c), ready.end());
    if (!c->closed && c->fd >= 0 && mosquitto_socket(c->mosq) == c->fd) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
    mosquitto_destroy(c->mosq);
    delete c;
  }

  // Disconnects every conn in `conns` cleanly (bounded by `within`), then frees them all.
  void close_all(std::vector<Conn*>& conns, double within) {
    for (auto* c : conns) disconnect(c);
    auto deadline = after(Clock::now(), within);
    while (Clock::now() < deadline) {
      bool pending = false;
      for (auto* c : conns)
        if (!c->closed && mosquitto_socket(c->mosq) >= 0 && mosquitto_want_write(c->mosq)) pending = true;
      if (!pending) break;
      poll(10);
    }
    for (auto* c : conns) destroy(c);
    conns.clear();
    ready.clear();
  }
};

// ---------------------------------------------------------------------------------------------------------
// Results

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
};
Percentiles percentiles(std::vector<float> v) {
  Percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]); };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.max = v.back();
  return p;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    o += ch;
  }
  return o;
}

std::string fmt(double v, int decimals = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// A connection storm over a range of devices, split across threads.
struct StormResult {
  long attempted = 0, ok = 0, refused = 0, failed = 0, timeouts = 0;
  TimePoint start, end;  // first connect started, last CONNACK
  std::vector<float> latency_ms;
  std::map<int, long> refusal_codes;
};

struct StormSpec {
  std::vector<long> devices;  // indices, in order
  std::vector<Creds> creds;
  int concurrency = 64;
  bool keep = false;
  double timeout = 10;     // per connection
  double deadline = 300;   // whole storm
  bool tcp_nodelay = false;
};

// Runs one thread's share; connections kept (spec.keep) are appended to `kept`.
void storm_thread(Worker& w, const StormSpec& spec, const std::vector<size_t>& mine, StormResult& r,
                  std::vector<Conn*>& kept) {
  std::deque<Conn*> order;  // in flight, oldest first
  size_t next = 0;
  long active = 0;
  r.start = Clock::now();
  r.end = r.start;
  auto hard_end = after(r.start, spec.deadline);
  auto finish = [&](Conn* c, Conn::Phase phase) {
    c->phase = phase;
    active--;
  };
  while ((next < mine.size() || active > 0) && Clock::now() < hard_end && !g_stop) {
    while (active < spec.concurrency && next < mine.size()) {
      size_t k = mine[next++];
      r.attempted++;
      Conn* c = w.open(spec.devices[k], spec.creds[k]);
      if (!c) {
        r.failed++;
        continue;
      }
      order.push_back(c);
      active++;
    }
    w.poll(5);
    std::vector<Conn*> ready;
    ready.swap(w.ready);
    std::vector<Conn*> to_free;
    for (Conn* c : ready) {
      c->ready = false;
      if (c->phase != Conn::Phase::inflight) continue;
      if (c->connack) {
        auto now = Clock::now();
        if (c->connack_rc == 0) {
          r.ok++;
          r.end = now;
          r.latency_ms.push_back(static_cast<float>(1000.0 * seconds_between(c->started, now)));
          if (spec.keep && !c->closed) {
            finish(c, Conn::Phase::kept);
            kept.push_back(c);
            continue;
          }
          w.disconnect(c);
        } else {
          r.refused++;
          r.refusal_codes[c->connack_rc]++;
        }
      } else {
        r.failed++;  // closed before any CONNACK
      }
      finish(c, Conn::Phase::done);
      to_free.push_back(c);
    }
    // Timeouts: the oldest in flight first.
    auto now = Clock::now();
    while (!order.empty()) {
      Conn* c = order.front();
      if (c->phase == Conn::Phase::kept) {
        order.pop_front();
        continue;
      }
      if (c->phase == Conn::Phase::done || seconds_between(c->started, now) < spec.timeout) break;
      order.pop_front();
      r.timeouts++;
      finish(c, Conn::Phase::done);
      to_free.push_back(c);
    }
    for (Conn* c : to_free) {
      // A DISCONNECT that could not be written at once (full socket) is dropped with the connection.
      auto it = std::find(order.begin(), order.end(), c);
      if (it != order.end()) order.erase(it);
      w.destroy(c);
    }
  }
  // Anything still in flight when the deadline hit counts as timed out.
  for (Conn* c : order) {
    if (c->phase != Conn::Phase::inflight) continue;
    r.timeouts++;
    w.destroy(c);
  }
}

StormResult run_storm(const StormSpec& spec, int threads, const std::string& host, int port,
                      std::vector<std::unique_ptr<Worker>>& workers, std::vector<std::vector<Conn*>>& kept) {
  workers.clear();
  kept.assign(static_cast<size_t>(threads), {});
  std::vector<StormResult> parts(static_cast<size_t>(threads));
  std::vector<std::vector<size_t>> shares(static_cast<size_t>(threads));
  for (size_t k = 0; k < spec.devices.size(); ++k) shares[k % static_cast<size_t>(threads)].push_back(k);
  for (int t = 0; t < threads; ++t) {
    workers.push_back(std::make_unique<Worker>());
    workers.back()->host = host;
    workers.back()->port = port;
    workers.back()->tcp_nodelay = spec.tcp_nodelay;
  }
  StormSpec per = spec;
  per.concurrency = std::max(1, spec.concurrency / threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] { storm_thread(*workers[static_cast<size_t>(t)], per, shares[static_cast<size_t>(t)], parts[static_cast<size_t>(t)], kept[static_cast<size_t>(t)]); });
  for (auto& t : ts) t.join();
  StormResult r = parts[0];
  for (size_t t = 1; t < parts.size(); ++t) {
    const auto& p = parts[t];
    r.attempted += p.attempted;
    r.ok += p.ok;
    r.refused += p.refused;
    r.failed += p.failed;
    r.timeouts += p.timeouts;
    r.start = std::min(r.start, p.start);
    r.end = std::max(r.end, p.end);
    r.latency_ms.insert(r.latency_ms.end(), p.latency_ms.begin(), p.latency_ms.end());
    for (auto [code, n] : p.refusal_codes) r.refusal_codes[code] += n;
  }
  return r;
}

std::string storm_json(const StormResult& r) {
  double secs = std::max(1e-6, seconds_between(r.start, r.end));
  auto p = percentiles(r.latency_ms);
  std::ostringstream o;
  o << "\"attempted\":" << r.attempted << ",\"ok\":" << r.ok << ",\"refused\":" << r.refused << ",\"failed\":" << r.failed
    << ",\"timeouts\":" << r.timeouts << ",\"seconds\":" << fmt(secs, 3) << ",\"rate\":" << fmt(static_cast<double>(r.ok) / secs)
    << ",\"latency_ms\":{\"p50\":" << fmt(p.p50, 2) << ",\"p90\":" << fmt(p.p90, 2) << ",\"p99\":" << fmt(p.p99, 2)
    << ",\"max\":" << fmt(p.max, 2) << "}";
  if (!r.refusal_codes.empty()) {
    o << ",\"refusal_codes\":{";
    bool first = true;
    for (auto [code, n] : r.refusal_codes) {
      o << (first ? "" : ",") << "\"" << code << "\":" << n;
      first = false;
    }
    o << "}";
  }
  return o.str();
}

std::string common_json(const std::string& mode, Options& o) {
  std::ostringstream s;
  s << "{\"mode\":\"" << mode << "\",\"label\":\"" << json_escape(o.str("label", "")) << "\",\"scenario\":\""
    << json_escape(o.str("scenario", "")) << "\",\"unix_time\":" << unix_now();
  return s.str();
}

StormSpec make_spec(Options& o, const Fleet& fleet, long first, long count, Login kind) {
  StormSpec spec;
  int64_t ts = o.num("ts", unix_now());
  spec.concurrency = static_cast<int>(o.num("concurrency", 64));
  spec.timeout = o.real("timeout", 10);
  spec.deadline = o.real("deadline", 600);
  spec.devices.reserve(static_cast<size_t>(count));
  spec.creds.reserve(static_cast<size_t>(count));
  for (long i = first; i < first + count; ++i) {
    spec.devices.push_back(i);
    spec.creds.push_back(fleet.creds(i, kind, ts));
  }
  return spec;
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}
long nofile() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  return static_cast<long>(rl.rlim_cur);
}

// ---------------------------------------------------------------------------------------------------------
// Modes

int mode_populate(Options& o) {
  Fleet fleet(o);
  long count = o.num("devices", 100000);
  std::string prefix = o.str("prefix", "iotgate:");
  o.check_all_used();
  std::string now = std::to_string(unix_now());
  std::string out;
  out.reserve(1 << 20);
  auto cmd = [&](std::initializer_list<std::string> args) {
    out += "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    if (out.size() > (1 << 20)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  };
  cmd({"SET", prefix + "schema", "1", "NX"});
  cmd({"SADD", prefix + "products", fleet.product});
  cmd({"HSET", prefix + "product:" + fleet.product, "protocol", "lierda", "enabled", "1", "created_at", now, "openid",
       fleet.openid, "product_key", fleet.key, "auth_type", "2", "encrypted", "0"});
  for (long i = 0; i < count; ++i) {
    cmd({"HSET", prefix + "device:" + fleet.product + ":" + fleet.eui(i), "enabled", "1", "origin", "cli", "created_at",
         now, "secret", fleet.secret(i)});
    cmd({"SADD", prefix + "devices:" + fleet.product, fleet.eui(i)});
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int mode_passwd(Options& o) {
  Fleet fleet(o);
  long count = o.num("devices", 100000);
  o.check_all_used();
  for (long i = 0; i < count; ++i) std::printf("%s:%s\n", fleet.username(i).c_str(), fleet.password(i, std::nullopt).c_str());
  return 0;
}

// Prints the JSON line (stdout) and the human line (stderr).
void emit(const std::string& json, const std::string& human) {
  std::printf("%s\n", json.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "%s\n", human.c_str());
}

int mode_connect(Options& o) {
  Fleet fleet(o);
  std::string host = o.str("host", "127.0.0.1");
  int port = static_cast<int>(o.num("port", 1883));
  long count = o.num("count", 10000), first = o.num("first", 0);
  int threads = static_cast<int>(o.num("threads", 1));
  Login kind = parse_login(o.str("login", "v2t1"));
  bool keep = o.flag("keep");
  std::string pass = o.str("pass", "");
  CpuWatch cpu(o.str("cpu", ""));
  StormSpec spec = make_spec(o, fleet, first, count, kind);
  spec.keep = keep;
  std::string head = common_json("connect", o);
  o.check_all_used();
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::vector<Conn*>> kept;
  cpu.begin();
  StormResult r = run_storm(spec, threads, host, port, workers, kept);
  std::string cpu_json = cpu.json_since();
  for (size_t t = 0; t < workers.size(); ++t) workers[t]->close_all(kept[t], 10);
  std::ostringstream j;
  j << head << ",\"port\":" << port << ",\"login\":\"" << o.str("login", "v2t1") << "\",\"pass\":\"" << pass
    << "\",\"first\":" << first << ",\"threads\":" << threads << ",\"concurrency\":" << spec.concurrency
    << ",\"keep\":" << (keep ? "true" : "false") << "," << storm_json(r) << ",\"cpu_ms\":" << cpu_json << "}";
  double secs = std::max(1e-6, seconds_between(r.start, r.end));
  emit(j.str(), "connect " + o.str("label", "") + " " + pass + ": " + std::to_string(r.ok) + "/" +
                    std::to_string(r.attempted) + " accepted in " + fmt(secs, 2) + " s = " +
                    fmt(static_cast<double>(r.ok) / secs, 0) + " conn/s (refused " + std::to_string(r.refused) +
                    ", failed " + std::to_string(r.failed) + ", timeouts " + std::to_string(r.timeouts) + ")");
  return r.ok == r.attempted ? 0 : 1;
}

int mode_hold(Options& o) {
  Fleet fleet(o);
  std::string host = o.str("host", "127.0.0.1");
  int port = static_cast<int>(o.num("port", 1883));
  long count = o.num("count", 20000), first = o.num("first", 0);
  int threads = static_cast<int>(o.num("threads", 1));
  Login kind = parse_login(o.str("login", "v2t1"));
  pid_t broker = static_cast<pid_t>(o.num("broker-pid", 0));
  double settle = o.real("settle", 2);
  double duration = o.real("duration", 0);  // 0: until SIGUSR1/SIGTERM/SIGINT
  double max_wait = o.real("max-wait", 600);
  StormSpec spec = make_spec(o, fleet, first, count, kind);
  spec.keep = true;
  std::string head = common_json("hold", o);
  o.check_all_used();
  if (nofile() < 3 * count + 100)
    die("RLIMIT_NOFILE " + std::to_string(nofile()) + " is too low for " + std::to_string(count) +
        " sessions (libmosquitto uses 3 descriptors per client)");
  long rss0 = broker ? rss_kb(broker) : -1;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::vector<Conn*>> kept;
  StormResult r = run_storm(spec, threads, host, port, workers, kept);
  // Keep servicing the sockets while idle (nothing should arrive; keepalive is 600 s).
  std::atomic<bool> idle_stop{false};
  std::vector<std::thread> idlers;
  for (auto& w : workers) idlers.emplace_back([&w, &idle_stop] {
    while (!idle_stop) w->poll(100);
  });
  sleep_until(after(Clock::now(), settle));
  long rss1 = broker ? rss_kb(broker) : -1;
  long alive = 0;
  for (auto& k : kept)
    for (auto* c : k) alive += !c->closed;
  std::ostringstream j;
  j << head << ",\"port\":" << port << ",\"login\":\"" << o.str("login", "v2t1") << "\",\"first\":" << first
    << ",\"count\":" << count << "," << storm_json(r) << ",\"alive\":" << alive << ",\"rss_before_kb\":" << rss0
    << ",\"rss_after_kb\":" << rss1 << "}";
  emit(j.str(), "hold " + o.str("label", "") + ": " + std::to_string(alive) + " sessions up; broker RSS " +
                    std::to_string(rss0) + " -> " + std::to_string(rss1) + " kB (READY)");
  if (!g_stop) {
    if (duration > 0) sleep_until(after(Clock::now(), std::min(duration, max_wait)));
    else sleep_until(after(Clock::now(), max_wait));
  }
  idle_stop = true;
  for (auto& t : idlers) t.join();
  for (size_t t = 0; t < workers.size(); ++t) workers[t]->close_all(kept[t], 20);
  return alive == count ? 0 : 1;
}

// A client of its own that listens on `filter`: connected and subscribed (CONNACK and SUBACK within 10 s), or
// the load generator stops with `who` in the message.
Conn* open_subscriber(Worker& w, const Creds& creds, const std::string& filter, int qos, const std::string& who) {
  Conn* c = w.open(-1, creds);
  if (!c) die(who + ": cannot connect");
  auto deadline = after(Clock::now(), 10);
  while (!c->connack && !c->closed && Clock::now() < deadline) w.poll(10);
  if (!c->connack || c->connack_rc != 0)
    die(who + " refused or timed out (CONNACK " + std::to_string(c->connack_rc) + ")");
  w.ready.clear();
  c->ready = false;
  mosquitto_subscribe(c->mosq, nullptr, filter.c_str(), qos);
  w.sync(c);
  while (!c->suback && !c->closed && Clock::now() < deadline) w.poll(10);
  if (!c->suback) die(who + ": no SUBACK");
  w.ready.clear();
  c->ready = false;
  return c;
}

// ---------------------------------------------------------------------------------------------------------
// Raw MQTT 3.1.1 I/O for the publish mode. Devices and the subscriber log in with libmosquitto (the same CONNECT
// as every other mode), then RawIo takes their sockets over: pre-built PUBLISH packets, several per send(), and
// deliveries counted from large reads, all on one thread. libmosquitto's calls per message (a publish, a read of
// each packet's header and body) cost the load generator about as much CPU as the broker spends on the message;
// raw I/O costs a fraction of it, so a broker on a CPU of its own (bench/run.sh) is the only bottleneck and its
// rate is its own cost per message. With `spin` the thread never sleeps: a reader asleep in epoll_wait makes
// the broker pay for waking it (an inter-processor interrupt, several microseconds in a VM) on its own CPU.

// Calls f(first_byte, body, body_len) for each whole packet at the start of [data, data + len); returns the
// bytes those packets take (the rest is a packet not yet complete).
template <typename F>
size_t for_each_packet(const uint8_t* data, size_t len, F&& f) {
  size_t pos = 0;
  while (len - pos >= 2) {
    size_t body = 0, i = pos + 1;
    int shift = 0;
    bool complete = false;
    while (i < len && shift <= 21) {
      uint8_t b = data[i++];
      body |= static_cast<size_t>(b & 0x7F) << shift;
      shift += 7;
      if (!(b & 0x80)) {
        complete = true;
        break;
      }
    }
    if (!complete) {
      if (shift > 21) die("malformed remaining length from the broker");
      break;
    }
    if (len - i < body) break;
    f(data[pos], data + i, body);
    pos = i + body;
  }
  return pos;
}

void put_remaining_length(std::string& out, size_t n) {
  do {
    uint8_t b = n & 0x7F;
    n >>= 7;
    out.push_back(static_cast<char>(n ? b | 0x80 : b));
  } while (n);
}

// PUBLISH, MQTT 3.1.1, no DUP or RETAIN; QoS 1 with packet id 0 (patched per message at *id_at).
std::string publish_packet(const std::string& topic, const std::vector<char>& payload, int qos, size_t* id_at) {
  std::string p;
  p.push_back(static_cast<char>(qos ? 0x32 : 0x30));
  put_remaining_length(p, 2 + topic.size() + (qos ? 2 : 0) + payload.size());
  p.push_back(static_cast<char>(topic.size() >> 8));
  p.push_back(static_cast<char>(topic.size() & 0xFF));
  p += topic;
  if (qos) {
    *id_at = p.size();
    p.append(2, '\0');
  }
  p.append(payload.begin(), payload.end());
  return p;
}

struct RawConn {
  Conn* conn = nullptr;  // libmosquitto's client: it logged in, and closes the socket at the end
  int fd = -1;
  bool closed = false;
  int inflight = 0;        // QoS 1 publishes not yet acknowledged
  uint16_t next_id = 0;
  std::string packet;      // this device's PUBLISH; QoS 1: packet id at id_at
  size_t id_at = 0;
  std::string burst;       // QoS 0: `burst` copies of packet, sent whole or in part
  std::string pending;     // bytes a send() did not take; they go first
  std::vector<uint8_t> partial;  // a packet read in part
};

struct RawIo {
  int qos = 0;
  int burst = 4;           // PUBLISH packets per send()
  int client_window = 10;  // QoS 1: most unacknowledged per device
  long window = 20000;     // most messages sent and not yet delivered
  bool spin = false;
  std::atomic<long> sent{0}, received{0}, acked{0}, device_rx{0}, dropped{0};
  std::vector<uint32_t>* bins = nullptr;  // deliveries per 10 ms from t0
  TimePoint t0;
  RawConn sub;
  std::vector<RawConn> pubs;
  int ep = -1;
  std::vector<uint8_t> buf = std::vector<uint8_t>(256 * 1024);
  std::string scratch;

  RawIo() {
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die(std::string("epoll_create1: ") + std::strerror(errno));
  }
  ~RawIo() { ::close(ep); }

  void add(RawConn& c) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &c;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) die(std::string("epoll_ctl ADD: ") + std::strerror(errno));
  }
  void lose(RawConn& c) {
    if (c.closed) return;
    c.closed = true;
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    if (&c != &sub) dropped.fetch_add(1, std::memory_order_relaxed);
  }
  // Writes c.pending; true when all of it went.
  bool flush(RawConn& c) {
    while (!c.pending.empty() && !c.closed) {
      ssize_t n = ::send(c.fd, c.pending.data(), c.pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        c.pending.erase(0, static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return false;
      } else if (!(n < 0 && errno == EINTR)) {
        lose(c);
      }
    }
    return c.pending.empty();
  }
  // Sends bytes after whatever is pending; the part the socket does not take is kept.
  void write(RawConn& c, const char* data, size_t len) {
    if (c.closed) return;
    if (c.pending.empty()) {
      ssize_t n = ::send(c.fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n == static_cast<ssize_t>(len)) return;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        lose(c);
        return;
      }
      size_t done = n > 0 ? static_cast<size_t>(n) : 0;
      c.pending.assign(data + done, len - done);
      return;
    }
    c.pending.append(data, len);
    flush(c);
  }
  static void puback(std::string& out, const uint8_t* id) {
    const char ack[4] = {0x40, 0x02, static_cast<char>(id[0]), static_cast<char>(id[1])};
    out.append(ack, 4);
  }
  // QoS > 0 PUBLISH: its packet id (after the topic).
  static const uint8_t* packet_id(const uint8_t* body, size_t len) {
    if (len < 2) return nullptr;
    size_t topic = (static_cast<size_t>(body[0]) << 8) | body[1];
    return len >= 2 + topic + 2 ? body + 2 + topic : nullptr;
  }

  // Reads what the socket has; returns the bytes read.
  size_t read(RawConn& c) {
    size_t total = 0;
    for (int round = 0; round < 8 && !c.closed; ++round) {
      size_t have = c.partial.size();
      if (have) std::memcpy(buf.data(), c.partial.data(), have);
      ssize_t n = ::recv(c.fd, buf.data() + have, buf.size() - have, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        lose(c);
        break;
      }
      if (n < 0) break;
      total += static_cast<size_t>(n);
      size_t len = have + static_cast<size_t>(n);
      scratch.clear();
      long publishes = 0;
      size_t used = for_each_packet(buf.data(), len, [&](uint8_t first, const uint8_t* body, size_t body_len) {
        uint8_t type = first >> 4;
        if (type == 3) {  // PUBLISH: a delivery (subscriber) or a platform answer (device)
          publishes++;
          if ((first >> 1) & 3) {
            const uint8_t* id = packet_id(body, body_len);
            if (id) puback(scratch, id);
          }
        } else if (type == 4 && &c != &sub && c.inflight > 0) {  // PUBACK of a device's QoS 1 publish
          c.inflight--;
          acked.fetch_add(1, std::memory_order_relaxed);
        }
      });
      c.partial.assign(buf.data() + used, buf.data() + len);
      if (publishes) {
        if (&c == &sub) {
          received.fetch_add(publishes, std::memory_order_relaxed);
          auto idx = static_cast<size_t>(std::max(0.0, seconds_between(t0, Clock::now())) * 100);
          if (idx < bins->size()) (*bins)[idx] += static_cast<uint32_t>(publishes);
        } else {
          device_rx.fetch_add(publishes, std::memory_order_relaxed);
        }
      }
      if (!scratch.empty()) write(c, scratch.data(), scratch.size());
      if (static_cast<size_t>(n) < buf.size() - have) break;  // drained
    }
    return total;
  }

  // A burst from one device, within the windows; returns the messages sent.
  long publish_from(RawConn& c) {
    if (c.closed || (!c.pending.empty() && !flush(c))) return 0;
    long room = window - (sent.load(std::memory_order_relaxed) - received.load(std::memory_order_relaxed));
    long k = std::min<long>(burst, room);
    if (qos == 1) k = std::min<long>(k, client_window - c.inflight);
    if (k <= 0) return 0;
    if (qos == 0) {
      write(c, c.burst.data(), c.packet.size() * static_cast<size_t>(k));
    } else {
      scratch.clear();
      for (long i = 0; i < k; ++i) {
        if (++c.next_id == 0) c.next_id = 1;
        size_t at = scratch.size() + c.id_at;
        scratch += c.packet;
        scratch[at] = static_cast<char>(c.next_id >> 8);
        scratch[at + 1] = static_cast<char>(c.next_id & 0xFF);
      }
      c.inflight += static_cast<int>(k);
      write(c, scratch.data(), scratch.size());
    }
    sent.fetch_add(k, std::memory_order_relaxed);
    return k;
  }

  // Until `stop`: reads everything that arrives, and publishes between pub_start and pub_end.
  void run(TimePoint pub_start, TimePoint pub_end, const std::atomic<bool>& stop) {
    epoll_event evs[512];
    size_t rr = 0;
    bool busy = true;
    while (!stop && !g_stop) {
      int n = epoll_wait(ep, evs, 512, spin || busy ? 0 : 1);
      busy = n > 0;
      for (int i = 0; i < n; ++i) {
        auto* c = static_cast<RawConn*>(evs[i].data.ptr);
        read(*c);
        if (!c->pending.empty()) flush(*c);
      }
      auto now = Clock::now();
      if (now < pub_start || now >= pub_end || pubs.empty()) continue;
      for (size_t k = 0; k < std::min<size_t>(pubs.size(), 64); ++k) {
        RawConn& c = pubs[rr];
        rr = rr + 1 == pubs.size() ? 0 : rr + 1;
        if (publish_from(c)) busy = true;
      }
    }
  }
};

// Publish throughput: K devices publish on their own topics, one subscriber on /sys/# counts deliveries.
int mode_publish(Options& o) {
  Fleet fleet(o);
  std::string host = o.str("host", "127.0.0.1");
  int port = static_cast<int>(o.num("port", 1883));
  long devices = o.num("devices", 1000), first = o.num("first", 0);
  int threads = static_cast<int>(o.num("threads", 1));  // for the devices' logins
  int qos = static_cast<int>(o.num("qos", 0));
  Login kind = parse_login(o.str("login", "v2t1"));
  double warmup = o.real("warmup", 2), duration = o.real("duration", 10), drain = o.real("drain", 10);
  RawIo io;
  io.qos = qos;
  io.window = o.num("window", 20000);
  io.client_window = static_cast<int>(o.num("client-window", 10));
  io.burst = static_cast<int>(o.num("burst", 4));
  io.spin = o.flag("spin");
  size_t payload_size = static_cast<size_t>(o.num("payload", 64));
  // opaque: payload_size bytes of 'x' (no platform answer); lierda: a V2 uplink frame, which iotgate answers
  // with an uplink_ack (QoS 1) to the device when plugin_opt_lierda_acks is on.
  std::string payload_kind = o.str("payload-kind", "opaque");
  std::string sub_user = o.str("sub-user", ""), sub_pass = o.str("sub-pass", "");
  std::string sub_filter = o.str("sub-filter", "/sys/#");
  pid_t stall_pid = static_cast<pid_t>(o.num("stall-pid", 0));
  double stall_at = o.real("stall-at", 3), stall_for = o.real("stall-for", 5);
  long stall_logins = o.num("stall-logins", 0), stall_first = o.num("stall-first", 0);
  CpuWatch cpu(o.str("cpu", ""));
  StormSpec spec = make_spec(o, fleet, first, devices, kind);
  spec.keep = true;
  StormSpec stall_spec = make_spec(o, fleet, stall_first, stall_logins, Login::v2t1);
  stall_spec.concurrency = 8;
  stall_spec.timeout = std::max(1.0, stall_for - 1.0);
  std::string head = common_json("publish", o);
  o.check_all_used();
  if (qos != 0 && qos != 1) die("--qos must be 0 or 1");
  if (io.burst < 1 || io.client_window < 1 || io.window < 1) die("--burst, --client-window and --window must be >= 1");
  if (stall_pid && stall_at + stall_for > duration) die("the stall must end within --duration");

  std::vector<char> payload(payload_size, 'x');
  if (payload_kind == "lierda") {
    std::string frame = "{\"MessageId\":1,\"HeaderCtrl\":4,\"Payload\":{\"data\":\"" +
                        std::string(payload_size > 60 ? payload_size - 60 : 4, 'A') + "\"},\"Version\":\"2.0\"}";
    payload.assign(frame.begin(), frame.end());
  } else if (payload_kind != "opaque") {
    die("--payload-kind must be opaque or lierda");
  }

  // Log in: the subscriber, then every device (kept), each with libmosquitto; then their sockets go to RawIo.
  Worker sub;
  sub.host = host;
  sub.port = port;
  Creds sc;
  // A service account's client id is bound to its name (NAME or NAME:ANYTHING, plugin_opt_bind_account_client_ids).
  sc.client_id = (sub_user.empty() ? std::string("bench-sub") : sub_user) + ":" + std::to_string(getpid());
  if (!sub_user.empty()) {
    sc.username = sub_user;
    sc.password = sub_pass;
  }
  Conn* sconn = open_subscriber(sub, sc, sub_filter, qos, "subscriber");
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::vector<Conn*>> kept;
  StormResult conn_r = run_storm(spec, threads, host, port, workers, kept);
  long up = 0;
  for (auto& k : kept) up += static_cast<long>(k.size());
  if (up == 0) die("no publisher connected (" + storm_json(conn_r) + ")");
  io.sub.conn = sconn;
  io.sub.fd = sub.release(sconn);
  io.pubs.reserve(static_cast<size_t>(up));
  for (size_t t = 0; t < kept.size(); ++t) {
    for (Conn* c : kept[t]) {
      RawConn r;
      r.conn = c;
      r.fd = workers[t]->release(c);
      if (r.fd < 0) continue;
      r.packet = publish_packet(fleet.topic(c->device, "uplink"), payload, qos, &r.id_at);
      if (qos == 0)
        for (int i = 0; i < io.burst; ++i) r.burst += r.packet;
      io.pubs.push_back(std::move(r));
    }
  }
  if (io.sub.fd < 0) die("the subscriber was disconnected");
  io.add(io.sub);
  for (auto& r : io.pubs) io.add(r);

  const double total = warmup + duration + drain + 5;
  std::vector<uint32_t> bins(static_cast<size_t>(total * 100) + 10, 0);
  io.bins = &bins;
  io.t0 = after(Clock::now(), 0.2);
  const TimePoint t0 = io.t0, win_start = after(t0, warmup), pub_end = after(win_start, duration);
  std::atomic<bool> io_stop{false};
  std::thread io_thread([&] { io.run(t0, pub_end, io_stop); });

  // Stall logins run on their own thread during the stall.
  StormResult stall_r;
  std::thread stall_thread;
  std::vector<std::unique_ptr<Worker>> stall_workers;
  std::vector<std::vector<Conn*>> stall_kept;

  // Main thread: sample the counters at the window edges, and stall the given process.
  struct Sample {
    long sent, received;
  };
  auto sample = [&] { return Sample{io.sent.load(), io.received.load()}; };
  cpu.begin();
  sleep_until(win_start);
  Sample s_win = sample();
  cpu.begin();
  std::map<std::string, double> cpu_stall0, cpu_stall1;
  Sample s_stall0{0, 0}, s_stall1{0, 0};
  TimePoint stall_start{}, stall_end{};
  if (stall_pid && !g_stop) {
    sleep_until(after(win_start, stall_at));
    if (!g_stop) {
      stall_start = Clock::now();
      s_stall0 = sample();
      cpu_stall0 = cpu.read();
      g_stopped_pid = stall_pid;
      if (::kill(stall_pid, SIGSTOP) != 0) die("cannot SIGSTOP " + std::to_string(stall_pid));
      if (stall_logins > 0) {
        stall_thread = std::thread([&] {
          std::this_thread::sleep_for(500ms);
          stall_r = run_storm(stall_spec, 1, host, port, stall_workers, stall_kept);
        });
      }
      sleep_until(after(stall_start, stall_for));
      s_stall1 = sample();
      cpu_stall1 = cpu.read();
      stall_end = Clock::now();
      resume_stopped();
      if (stall_thread.joinable()) stall_thread.join();
    }
  }
  sleep_until(pub_end);
  Sample s_end = sample();
  std::string cpu_json = cpu.json_since();
  // Drain: wait until every message sent has been delivered (QoS 0 may be dropped by a broker: bounded wait).
  auto drain_end = after(Clock::now(), drain);
  while (Clock::now() < drain_end && !g_stop) {
    if (io.received.load() >= io.sent.load() && (qos == 0 || io.acked.load() >= io.sent.load())) break;
    if (sleep_until(after(Clock::now(), 0.05))) break;
  }
  io_stop = true;
  io_thread.join();
  Sample s_final = sample();
  // DISCONNECT where no packet is half written, then libmosquitto closes the sockets.
  const char disconnect[2] = {static_cast<char>(0xE0), 0};
  if (io.sub.pending.empty()) io.write(io.sub, disconnect, 2);
  sub.destroy(sconn);
  for (auto& r : io.pubs)
    if (r.pending.empty()) io.write(r, disconnect, 2);
  for (size_t t = 0; t < workers.size(); ++t)
    for (Conn* c : kept[t]) workers[t]->destroy(c);

  // Rates and the longest delivery gap (10 ms bins) in [a, b) seconds after t0.
  auto bin_rate = [&](double a, double b) {
    double sum = 0;
    for (size_t i = static_cast<size_t>(a * 100); i < static_cast<size_t>(b * 100) && i < bins.size(); ++i) sum += bins[i];
    return sum / std::max(1e-6, b - a);
  };
  auto max_gap_ms = [&](double a, double b) {
    long run = 0, best = 0;
    for (size_t i = static_cast<size_t>(a * 100); i < static_cast<size_t>(b * 100) && i < bins.size(); ++i) {
      run = bins[i] ? 0 : run + 1;
      best = std::max(best, run);
    }
    return best * 10;
  };
  double w0 = seconds_between(t0, win_start), w1 = seconds_between(t0, pub_end);
  double delivered_rate = bin_rate(w0, w1);
  double sent_rate = static_cast<double>(s_end.sent - s_win.sent) / duration;
  std::ostringstream j;
  j << head << ",\"port\":" << port << ",\"qos\":" << qos << ",\"devices\":" << devices << ",\"publishers_up\":" << up
    << ",\"threads\":" << threads << ",\"io\":\"raw\",\"burst\":" << io.burst << ",\"spin\":" << (io.spin ? "true" : "false")
    << ",\"payload\":" << payload.size() << ",\"payload_kind\":\"" << payload_kind << "\"" << ",\"window\":" << io.window
    << ",\"warmup\":" << warmup << ",\"duration\":" << duration << ",\"sent\":" << (s_end.sent - s_win.sent)
    << ",\"delivered\":" << static_cast<long>(delivered_rate * duration + 0.5) << ",\"sent_rate\":" << fmt(sent_rate)
    << ",\"delivered_rate\":" << fmt(delivered_rate) << ",\"max_gap_ms\":" << max_gap_ms(w0, w1)
    << ",\"total_sent\":" << s_final.sent << ",\"total_received\":" << s_final.received
    << ",\"undelivered\":" << (s_final.sent - s_final.received) << ",\"publish_errors\":0"
    << ",\"publishers_dropped\":" << io.dropped.load() << ",\"device_received\":" << io.device_rx.load() << ",\"connect\":{" << storm_json(conn_r) << "}"
    << ",\"cpu_ms\":" << cpu_json;
  std::string human = "publish " + o.str("label", "") + " qos" + std::to_string(qos) + ": " + std::to_string(up) +
                      " devices, " + fmt(delivered_rate, 0) + " msg/s delivered (" + fmt(sent_rate, 0) +
                      " sent/s), longest gap " + std::to_string(max_gap_ms(w0, w1)) + " ms, undelivered " +
                      std::to_string(s_final.sent - s_final.received);
  if (stall_pid && stall_end != TimePoint{}) {
    double a = seconds_between(t0, stall_start), b = seconds_between(t0, stall_end);
    double before = bin_rate(w0, a);
    double during = bin_rate(a, b);
    double after_rate = bin_rate(b, w1);
    j << ",\"stall\":{\"pid\":" << stall_pid << ",\"at\":" << fmt(seconds_between(win_start, stall_start), 3)
      << ",\"seconds\":" << fmt(b - a, 3) << ",\"rate_before\":" << fmt(before) << ",\"rate_during\":" << fmt(during)
      << ",\"rate_after\":" << fmt(after_rate) << ",\"max_gap_during_ms\":" << max_gap_ms(a, b)
      << ",\"max_gap_after_ms\":" << max_gap_ms(b, w1) << ",\"sent_during\":" << (s_stall1.sent - s_stall0.sent)
      << ",\"others_ms_before\":" << std::llround(cpu.others_between(cpu.start, cpu_stall0))
      << ",\"others_ms_during\":" << std::llround(cpu.others_between(cpu_stall0, cpu_stall1))
      << ",\"logins\":{" << (stall_logins > 0 ? storm_json(stall_r) : std::string("\"attempted\":0")) << "}}";
    human += "; redis stopped " + fmt(b - a, 1) + " s: " + fmt(during, 0) + " msg/s during (" + fmt(before, 0) +
             " before, " + fmt(after_rate, 0) + " after, longest gap after " + std::to_string(max_gap_ms(b, w1)) +
             " ms), logins during the stall " + std::to_string(stall_r.ok) + "/" + std::to_string(stall_r.attempted) + " ok";
  }
  j << "}";
  emit(j.str(), human);
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// OTA: Lierda V2 firmware reports (HeaderCtrl 8). The platform answers each with a firmware_report_ack (same
// MessageId) and, the first time a device reports the from-version of a running task, with an ota_notify
// (HeaderCtrl 9). On iotgate the plugin is the platform; on plain mosquitto the echo (--echo) plays it.

// The upgrade task: what the echo notifies, and what every notify received must carry.
struct OtaFirmware {
  std::string from_version, target_version, url, md5, name;
  long size = 0;
};

std::optional<int64_t> ota_int(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd()) return std::nullopt;
  if (it->value.IsInt64()) return it->value.GetInt64();
  if (it->value.IsString()) {
    char* end = nullptr;
    long long v = std::strtoll(it->value.GetString(), &end, 10);
    if (it->value.GetStringLength() > 0 && *end == 0) return v;
  }
  return std::nullopt;
}
bool ota_printable(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (unsigned char ch : s)
    if (ch < 0x20 || ch == 0x7f) return false;
  return true;
}
bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// The platform on plain mosquitto: one client subscribed to /sys/+/+/+/firmware_report that does what iotgate
// does with each report: parse it, check its fields, ack it with the same MessageId (QoS 1), and notify a device
// the first time in this run that it reports the task's from-version (QoS 1). Runs on its own thread.
class OtaEcho {
 public:
  explicit OtaEcho(const OtaFirmware& fw) : fw_(fw) {}
  std::atomic<long> reports{0}, acks{0}, notifies{0}, refused{0};

  void on_message(Conn* c, const mosquitto_message* m) {
    static constexpr std::string_view kSuffix = "firmware_report";
    std::string_view topic(m->topic);
    if (!ends_with(topic, kSuffix)) return;
    reports.fetch_add(1, std::memory_order_relaxed);
    std::string prefix(topic.substr(0, topic.size() - kSuffix.size()));
    rapidjson::Document doc;
    doc.Parse(static_cast<const char*>(m->payload), static_cast<size_t>(m->payloadlen));
    // Like iotgate: a frame that is not JSON, not HeaderCtrl 8 or without a Payload object gets no answer.
    if (doc.HasParseError() || !doc.IsObject() || ota_int(doc, "HeaderCtrl") != 8) {
      refused.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    auto payload = doc.FindMember("Payload");
    if (payload == doc.MemberEnd() || !payload->value.IsObject()) {
      refused.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    std::string message_id = "null";
    auto mid = doc.FindMember("MessageId");
    if (mid != doc.MemberEnd() && mid->value.IsString())
      message_id = "\"" + json_escape(std::string(mid->value.GetString(), mid->value.GetStringLength())) + "\"";
    else if (mid != doc.MemberEnd() && mid->value.IsNumber())
      message_id = mid->value.IsInt64() ? std::to_string(mid->value.GetInt64()) : fmt(mid->value.GetDouble(), 0);
    const rapidjson::Value& p = payload->value;
    auto version = iotgate::text_or_number(p, "SoftVer"), hardware = iotgate::text_or_number(p, "HardVer"), module = iotgate::text_or_number(p, "Module");
    bool ok = version && ota_printable(*version, 64) && (!hardware || hardware->empty() || ota_printable(*hardware, 64)) &&
              (!module || ota_printable(*module, 64));
    std::string ack = "{\"MessageId\":" + message_id + ",\"HeaderCtrl\":8,\"Payload\":{\"Code\":\"" +
                      (ok ? "200\",\"Msg\":\"SUCCESS" : "4001\",\"Msg\":\"FAILURE") + "\"},\"Version\":\"2.0\"}";
    publish(c, prefix + "firmware_report_ack", ack);
    acks.fetch_add(1, std::memory_order_relaxed);
    if (!ok || module.value_or("default") != "default" || *version != fw_.from_version) return;
    if (!notified_.insert(prefix).second) return;  // once per device and run, as a task's progress does
    char down_id[32];
    std::snprintf(down_id, sizeof down_id, "bench-%08lx", ++down_seq_);
    std::string notify = "{\"MessageId\":" + std::to_string(++message_seq_) + ",\"HeaderCtrl\":9,\"Payload\":{\"Type\":2,\"Url\":\"" +
                         json_escape(fw_.url) + "\",\"SoftVer\":\"" + json_escape(fw_.target_version) +
                         "\",\"SoftSize\":" + std::to_string(fw_.size) + ",\"MD5\":\"" + json_escape(fw_.md5) +
                         "\",\"DownID\":\"" + down_id + "\",\"firmwareName\":\"" + json_escape(fw_.name) +
                         "\"},\"Version\":\"2.0\"}";
    publish(c, prefix + "ota_notify", notify);
    notifies.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  void publish(Conn* c, const std::string& topic, const std::string& payload) {
    mosquitto_publish(c->mosq, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1, false);
  }
  const OtaFirmware& fw_;
  std::set<std::string> notified_;
  unsigned long down_seq_ = 0;
  long message_seq_ = 0;
};

enum OtaPhase : uint8_t { kFixedWarmup, kFixedMeasured, kSatWarmup, kSatMeasured };

struct OtaDevice {   // touched only by the thread that owns the device's connection
  int64_t first_report_ns = 0;  // this run's first report (steady clock)
  bool notified = false;
  int outstanding = 0;          // reports without their ack yet
};
struct OtaReport {
  int64_t sent_ns;
  OtaPhase phase;
  bool acked;
};
// One load generator thread's devices: reports sent (indexed by sequence; MessageId = seq * threads + thread + 1,
// unique in the run), latencies and anomalies.
struct OtaThread {
  std::vector<OtaReport> reports;
  std::vector<float> fixed_ack_ms, sat_ack_ms, notify_ms;
  std::deque<Conn*> may_report;  // saturation: one entry per free slot of a device's window
  bool saturating = false;
  long sat_window_acks = 0, ack_failures = 0, unknown_acks = 0, bad_notifies = 0, duplicate_notifies = 0;
  long not_sent = 0;             // fixed rate: reports due on a device that was gone
  double max_lag_ms = 0;         // fixed rate: how late the load generator sent a report against its schedule
};

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
int64_t steady_ns(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::string percentiles_json(const std::vector<float>& v) {
  auto p = percentiles(v);
  return "{\"n\":" + std::to_string(v.size()) + ",\"p50\":" + fmt(p.p50, 2) + ",\"p90\":" + fmt(p.p90, 2) +
         ",\"p99\":" + fmt(p.p99, 2) + ",\"max\":" + fmt(p.max, 2) + "}";
}

// K devices (connected and subscribed to their firmware_report_ack and ota_notify) send firmware reports:
// first at a fixed rate (latency of the ack and of each device's first notify), then as fast as a window of
// unacknowledged reports per device allows (reports/s acknowledged).
int mode_ota(Options& o) {
  Fleet fleet(o);
  std::string host = o.str("host", "127.0.0.1");
  int port = static_cast<int>(o.num("port", 1883));
  long count = o.num("count", 1000), first = o.num("first", 0);
  int threads = static_cast<int>(o.num("threads", 1));
  int qos = static_cast<int>(o.num("qos", 1));
  Login kind = parse_login(o.str("login", "v2t1"));
  double rate = o.real("rate", 2000);
  double warmup = o.real("warmup", 1), duration = o.real("duration", 10);
  double sat_duration = o.real("sat-duration", duration), gap = o.real("gap", 1), drain = o.real("drain", 10);
  int client_window = static_cast<int>(o.num("client-window", 1));
  bool echo = o.flag("echo");
  OtaFirmware fw;
  fw.from_version = o.str("from-version", "1.0");
  fw.target_version = o.str("target-version", "2.0");
  fw.url = o.str("target-url", "http://example.com/fw.bin");
  fw.md5 = o.str("target-md5", "0123456789abcdef0123456789abcdef");
  fw.size = o.num("target-size", 1024);
  fw.name = o.str("task-name", "bench-ota");
  std::string hardware = o.str("hard-version", "HW1");
  CpuWatch cpu(o.str("cpu", ""));
  StormSpec spec = make_spec(o, fleet, first, count, kind);
  spec.keep = true;
  spec.tcp_nodelay = o.num("tcp-nodelay", 1) != 0;
  std::string head = common_json("ota", o);
  o.check_all_used();
  if (qos != 0 && qos != 1) die("--qos must be 0 or 1");
  if (count < 1 || threads < 1 || rate <= 0 || client_window < 1) die("--count, --threads, --rate, --client-window must be positive");
  if (!ota_printable(fw.from_version, 64) || !ota_printable(hardware, 64)) die("bad --from-version / --hard-version");

  // The echo first, so that no report goes unanswered on plain mosquitto.
  OtaEcho platform(fw);
  Worker echo_w;
  echo_w.host = host;
  echo_w.port = port;
  echo_w.send_maximum = 65535;  // its QoS 1 answers to every device go out on this one connection
  echo_w.tcp_nodelay = spec.tcp_nodelay;
  Conn* echo_conn = nullptr;
  std::atomic<bool> echo_stop{false};
  std::atomic<pid_t> echo_tid{0};
  std::thread echo_thread;
  if (echo) {
    Creds ec;
    ec.client_id = "bench-ota-echo-" + std::to_string(getpid());
    echo_w.on_message = [&platform](Conn* c, const mosquitto_message* m) { platform.on_message(c, m); };
    // QoS 0: iotgate sees each report inside the broker, with no delivery of its own; this is the cheapest stand-in.
    echo_conn = open_subscriber(echo_w, ec, "/sys/+/+/+/firmware_report", 0, "echo");
    echo_thread = std::thread([&] {
      echo_tid = gettid();
      while (!echo_stop) {
        echo_w.poll(5);
        echo_w.ready.clear();
      }
    });
    while (echo_tid == 0) std::this_thread::sleep_for(1ms);
    cpu.own_threads.emplace_back("echo", echo_tid.load());
  }
  auto stop_echo = [&] {
    if (!echo_thread.joinable()) return;
    echo_stop = true;
    echo_thread.join();
    std::vector<Conn*> ecs{echo_conn};
    echo_w.close_all(ecs, 5);
  };

  // Devices: connect them all, then subscribe each to the two topics the platform answers on. (Not to
  // <prefix>+: on plain mosquitto that would deliver every report back to its own device as well.)
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::vector<Conn*>> kept;
  StormResult conn_r = run_storm(spec, threads, host, port, workers, kept);
  long up = 0;
  for (auto& k : kept) up += static_cast<long>(k.size());
  if (up == 0) {
    stop_echo();
    die("no device connected (" + storm_json(conn_r) + ")");
  }
  for (auto& k : kept)
    for (Conn* c : k) {
      c->topic = fleet.topic(c->device, "firmware_report");
      std::string ack_topic = fleet.topic(c->device, "firmware_report_ack"), notify_topic = fleet.topic(c->device, "ota_notify");
      char* topics[2] = {ack_topic.data(), notify_topic.data()};
      mosquitto_subscribe_multiple(c->mosq, nullptr, 2, topics, 1, 0, nullptr);
      c->worker->sync(c);
    }
  long subscribed = 0;
  auto sub_deadline = after(Clock::now(), 20);
  while (Clock::now() < sub_deadline && !g_stop) {
    subscribed = 0;
    for (size_t t = 0; t < workers.size(); ++t) {
      workers[t]->poll(1);
      workers[t]->ready.clear();
      for (Conn* c : kept[t]) subscribed += c->suback;
    }
    if (subscribed == up) break;
  }
  if (subscribed < up) {
    stop_echo();
    die("only " + std::to_string(subscribed) + " of " + std::to_string(up) + " devices got their SUBACK");
  }

  std::vector<OtaDevice> devices(static_cast<size_t>(count));
  std::vector<OtaThread> states(workers.size());
  std::atomic<long> total_sent{0}, total_acked{0}, first_reports{0}, notifies{0}, publish_errors{0};
  TimePoint fixed_start = after(Clock::now(), 0.2);
  TimePoint fixed_win = after(fixed_start, warmup), fixed_end = after(fixed_win, duration);
  bool saturate = sat_duration > 0;
  TimePoint sat_start = after(fixed_end, gap), sat_win = after(sat_start, warmup), sat_end = after(sat_win, sat_duration);
  TimePoint send_end = saturate ? sat_end : fixed_end;
  int64_t sat_win_ns = steady_ns(sat_win), sat_end_ns = steady_ns(sat_end);

  for (size_t t = 0; t < workers.size(); ++t) {
    OtaThread& st = states[t];
    st.reports.reserve(static_cast<size_t>(rate * (warmup + duration) / threads) + 1024);
    workers[t]->on_message = [&, t](Conn* c, const mosquitto_message* m) {
      int64_t now = steady_ns();
      OtaThread& s = states[t];
      OtaDevice& d = devices[static_cast<size_t>(c->device - first)];
      std::string_view topic(m->topic);
      bool is_ack = ends_with(topic, "/firmware_report_ack"), is_notify = ends_with(topic, "/ota_notify");
      if (!is_ack && !is_notify) return;
      rapidjson::Document doc;
      doc.Parse(static_cast<const char*>(m->payload), static_cast<size_t>(m->payloadlen));
      bool parsed = !doc.HasParseError() && doc.IsObject();
      auto payload = parsed ? doc.FindMember("Payload") : doc.MemberEnd();
      bool has_payload = parsed && payload != doc.MemberEnd() && payload->value.IsObject();
      if (is_ack) {
        auto id = parsed ? ota_int(doc, "MessageId") : std::nullopt;
        long seq = -1;
        if (id && *id >= 1 && (*id - 1) % threads == static_cast<long>(t)) seq = static_cast<long>((*id - 1) / threads);
        if (seq < 0 || seq >= static_cast<long>(s.reports.size()) || s.reports[static_cast<size_t>(seq)].acked) {
          s.unknown_acks++;
          return;
        }
        OtaReport& r = s.reports[static_cast<size_t>(seq)];
        r.acked = true;
        d.outstanding--;
        if (s.saturating) s.may_report.push_back(c);
        total_acked.fetch_add(1, std::memory_order_relaxed);
        if (ota_int(doc, "HeaderCtrl") != 8 || !has_payload || iotgate::text_or_number(payload->value, "Code") != std::string("200"))
          s.ack_failures++;
        float ms = static_cast<float>(static_cast<double>(now - r.sent_ns) / 1e6);
        if (r.phase == kFixedMeasured) s.fixed_ack_ms.push_back(ms);
        else if (r.phase == kSatMeasured) s.sat_ack_ms.push_back(ms);
        if (now >= sat_win_ns && now < sat_end_ns) s.sat_window_acks++;
        return;
      }
      // ota_notify: the task's firmware, as the device needs it to upgrade.
      bool good = parsed && ota_int(doc, "HeaderCtrl") == 9 && has_payload && ota_int(payload->value, "Type") == 2 &&
                  iotgate::text_or_number(payload->value, "Url") == fw.url && iotgate::text_or_number(payload->value, "SoftVer") == fw.target_version &&
                  iotgate::text_or_number(payload->value, "MD5") == fw.md5 && ota_int(payload->value, "SoftSize") == fw.size &&
                  iotgate::text_or_number(payload->value, "DownID").value_or("") != "";
      if (!good) {
        s.bad_notifies++;
        return;
      }
      if (d.notified || d.first_report_ns == 0) {  // a second notify in the run, or one before any report
        s.duplicate_notifies++;
        return;
      }
      d.notified = true;
      notifies.fetch_add(1, std::memory_order_relaxed);
      s.notify_ms.push_back(static_cast<float>(static_cast<double>(now - d.first_report_ns) / 1e6));
    };
  }

  std::atomic<bool> drain_stop{false};
  std::atomic<long> dropped{0};
  std::vector<std::thread> senders;
  for (size_t t = 0; t < workers.size(); ++t) {
    senders.emplace_back([&, t] {
      Worker& w = *workers[t];
      OtaThread& st = states[t];
      std::vector<Conn*>& mine = kept[t];
      char frame[512];
      auto send = [&](Conn* c, OtaPhase phase) {
        if (c->closed) return false;
        long id = static_cast<long>(st.reports.size()) * threads + static_cast<long>(t) + 1;
        int n = std::snprintf(frame, sizeof frame,
                              "{\"MessageId\":%ld,\"HeaderCtrl\":8,\"Payload\":{\"SoftVer\":\"%s\",\"HardVer\":\"%s\"},\"Version\":\"2.0\"}",
                              id, fw.from_version.c_str(), hardware.c_str());
        int64_t at = steady_ns();
        int rc = mosquitto_publish(c->mosq, nullptr, c->topic.c_str(), n, frame, qos, false);
        if (rc != MOSQ_ERR_SUCCESS) {
          publish_errors.fetch_add(1, std::memory_order_relaxed);
          w.sync(c);
          return false;
        }
        st.reports.push_back({at, phase, false});
        OtaDevice& d = devices[static_cast<size_t>(c->device - first)];
        d.outstanding++;
        if (d.first_report_ns == 0) {
          d.first_report_ns = at;
          first_reports.fetch_add(1, std::memory_order_relaxed);
        }
        total_sent.fetch_add(1, std::memory_order_relaxed);
        if (mosquitto_want_write(c->mosq)) w.sync(c);
        return true;
      };
      // Fixed rate: this thread's share of the rate, its reports evenly spaced and offset from the other threads'.
      double my_rate = rate / static_cast<double>(workers.size());
      TimePoint my_start = after(fixed_start, static_cast<double>(t) / rate);
      long k = 0;
      auto due = [&](long i) { return after(my_start, static_cast<double>(i) / my_rate); };
      while (!g_stop) {
        auto now = Clock::now();
        if (now >= send_end) break;
        if (now >= fixed_start && now < fixed_end) {
          for (TimePoint d = due(k); d <= now && d < fixed_end; d = due(k)) {
            st.max_lag_ms = std::max(st.max_lag_ms, 1000 * seconds_between(d, now));
            if (!send(mine[static_cast<size_t>(k % static_cast<long>(mine.size()))], now < fixed_win ? kFixedWarmup : kFixedMeasured))
              st.not_sent++;
            k++;
          }
          // epoll waits whole milliseconds: a report may go up to ~1 ms late (max_lag_ms shows it), never early.
          w.poll(due(k) > Clock::now() ? 1 : 0);
        } else if (saturate && now >= sat_start) {
          if (!st.saturating) {
            st.saturating = true;
            for (Conn* c : mine)
              for (int i = devices[static_cast<size_t>(c->device - first)].outstanding; i < client_window; ++i)
                st.may_report.push_back(c);
          }
          bool idle = true;
          for (int budget = 256; budget > 0 && !st.may_report.empty(); --budget) {
            Conn* c = st.may_report.front();
            st.may_report.pop_front();
            if (send(c, now < sat_win ? kSatWarmup : kSatMeasured)) idle = false;
          }
          w.poll(idle ? 1 : 0);
        } else {
          w.poll(1);
        }
        w.ready.clear();
      }
      st.saturating = false;
      long gone = 0;
      for (Conn* c : mine) gone += c->closed;
      dropped += gone;
      while (!drain_stop && !g_stop) {  // answers still on their way
        w.poll(5);
        w.ready.clear();
      }
    });
  }

  sleep_until(fixed_win);
  cpu.begin();
  long fixed_acked0 = total_acked.load();
  sleep_until(fixed_end);
  auto cpu_fixed = cpu.since();
  long fixed_acked1 = total_acked.load();
  std::map<std::string, double> cpu_sat;
  if (saturate) {
    sleep_until(sat_win);
    cpu.begin();
    sleep_until(sat_end);
    cpu_sat = cpu.since();
  } else {
    sleep_until(send_end);
  }
  // Drain: every report acked and every device that reported notified, or the time is up.
  auto drain_end = after(Clock::now(), drain);
  while (Clock::now() < drain_end && !g_stop) {
    if (total_acked.load() >= total_sent.load() && notifies.load() >= first_reports.load()) break;
    if (sleep_until(after(Clock::now(), 0.02))) break;
  }
  drain_stop = true;
  for (auto& t : senders) t.join();
  stop_echo();
  for (size_t t = 0; t < workers.size(); ++t) workers[t]->close_all(kept[t], 10);

  // Totals over the threads.
  std::vector<float> fixed_ms, sat_ms, notify_ms;
  long sent_phase[4] = {0, 0, 0, 0}, acked_phase[4] = {0, 0, 0, 0};
  long sat_window_acks = 0, ack_failures = 0, unknown_acks = 0, bad_notifies = 0, duplicate_notifies = 0, not_sent = 0;
  double max_lag_ms = 0;
  for (auto& st : states) {
    fixed_ms.insert(fixed_ms.end(), st.fixed_ack_ms.begin(), st.fixed_ack_ms.end());
    sat_ms.insert(sat_ms.end(), st.sat_ack_ms.begin(), st.sat_ack_ms.end());
    notify_ms.insert(notify_ms.end(), st.notify_ms.begin(), st.notify_ms.end());
    for (const auto& r : st.reports) {
      sent_phase[r.phase]++;
      acked_phase[r.phase] += r.acked;
    }
    sat_window_acks += st.sat_window_acks;
    ack_failures += st.ack_failures;
    unknown_acks += st.unknown_acks;
    bad_notifies += st.bad_notifies;
    duplicate_notifies += st.duplicate_notifies;
    not_sent += st.not_sent;
    max_lag_ms = std::max(max_lag_ms, st.max_lag_ms);
  }
  long sent = total_sent.load(), acked = total_acked.load();
  long missing_acks = sent - acked, missing_notifies = first_reports.load() - notifies.load();
  double sat_rate = saturate ? static_cast<double>(sat_window_acks) / sat_duration : 0;
  double fixed_rate = static_cast<double>(fixed_acked1 - fixed_acked0) / duration;
  auto noise_others = cpu_fixed["others"] + (saturate ? cpu_sat["others"] : 0);
  double measured = duration + (saturate ? sat_duration : 0);
  std::ostringstream j;
  j << head << ",\"port\":" << port << ",\"echo\":" << (echo ? "true" : "false") << ",\"qos\":" << qos
    << ",\"devices\":" << count << ",\"devices_up\":" << up << ",\"threads\":" << threads
    << ",\"from_version\":\"" << json_escape(fw.from_version) << "\",\"connect\":{" << storm_json(conn_r) << "}"
    << ",\"fixed\":{\"rate\":" << fmt(rate) << ",\"warmup\":" << warmup << ",\"duration\":" << duration
    << ",\"sent\":" << sent_phase[kFixedMeasured] << ",\"acked\":" << acked_phase[kFixedMeasured]
    << ",\"acked_rate\":" << fmt(fixed_rate) << ",\"not_sent\":" << not_sent << ",\"max_lag_ms\":" << fmt(max_lag_ms, 2)
    << ",\"ack_ms\":" << percentiles_json(fixed_ms) << ",\"cpu_ms\":" << CpuWatch::json(cpu_fixed) << "}"
    << ",\"notify\":{\"expected\":" << first_reports.load() << ",\"received\":" << notifies.load()
    << ",\"missing\":" << missing_notifies << ",\"bad\":" << bad_notifies << ",\"duplicates\":" << duplicate_notifies
    << ",\"ms\":" << percentiles_json(notify_ms) << "}";
  if (saturate)
    j << ",\"saturation\":{\"warmup\":" << warmup << ",\"duration\":" << sat_duration << ",\"client_window\":" << client_window
      << ",\"sent\":" << sent_phase[kSatMeasured] << ",\"acked\":" << sat_window_acks << ",\"rate\":" << fmt(sat_rate)
      << ",\"ack_ms\":" << percentiles_json(sat_ms) << ",\"cpu_ms\":" << CpuWatch::json(cpu_sat) << "}";
  j << ",\"total_sent\":" << sent << ",\"total_acked\":" << acked << ",\"missing_acks\":" << missing_acks
    << ",\"ack_failures\":" << ack_failures << ",\"unknown_acks\":" << unknown_acks
    << ",\"publish_errors\":" << publish_errors.load() << ",\"devices_dropped\":" << dropped.load();
  if (echo)
    j << ",\"echo_counts\":{\"reports\":" << platform.reports.load() << ",\"acks\":" << platform.acks.load()
      << ",\"notifies\":" << platform.notifies.load() << ",\"refused\":" << platform.refused.load() << "}";
  // Last, so that bench/run.sh finds the window and the CPU of other processes for its noise check.
  j << ",\"noise\":{\"measured_seconds\":" << fmt(measured, 1) << ",\"others\":" << std::llround(noise_others) << "}}";

  std::vector<std::string> problems;
  if (up < count) problems.push_back(std::to_string(count - up) + " devices not connected");
  if (missing_acks > 0) problems.push_back(std::to_string(missing_acks) + " reports never acked");
  if (ack_failures > 0) problems.push_back(std::to_string(ack_failures) + " acks without Code 200");
  if (first_reports.load() == 0) problems.push_back("no report sent");
  if (missing_notifies > 0)
    problems.push_back(std::to_string(missing_notifies) + " of " + std::to_string(first_reports.load()) +
                       " devices never got an ota_notify (is the task running?)");
  if (bad_notifies > 0) problems.push_back(std::to_string(bad_notifies) + " ota_notify frames not of the task");
  if (publish_errors.load() > 0) problems.push_back(std::to_string(publish_errors.load()) + " publish errors");
  if (dropped.load() > 0) problems.push_back(std::to_string(dropped.load()) + " devices disconnected");
  auto pf = percentiles(fixed_ms), pn = percentiles(notify_ms), ps = percentiles(sat_ms);
  std::string human = "ota " + o.str("label", "") + (echo ? " (echo as platform)" : "") + ": " + std::to_string(up) +
                      " devices; at " + fmt(rate, 0) + " reports/s: ack p50 " + fmt(pf.p50, 2) + " / p99 " +
                      fmt(pf.p99, 2) + " ms, notify p50 " + fmt(pn.p50, 2) + " / p99 " + fmt(pn.p99, 2) + " ms (" +
                      std::to_string(notifies.load()) + "/" + std::to_string(first_reports.load()) + " notified)";
  if (saturate)
    human += "; saturated: " + fmt(sat_rate, 0) + " reports/s acked (ack p50 " + fmt(ps.p50, 2) + " / p99 " + fmt(ps.p99, 2) + " ms)";
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
    human += "\nota " + o.str("label", "") + " FAILED: " + all;
  }
  emit(j.str(), human);
  return problems.empty() ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------------------
// report: the table of a results file (JSON lines written by bench/run.sh), as Markdown.

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double num_at(const rapidjson::Value& obj, const char* path) {
  const rapidjson::Value* v = &obj;
  std::string p(path);
  size_t pos = 0;
  while (true) {
    size_t dot = p.find('.', pos);
    std::string name = p.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (!v->IsObject()) return NAN;
    auto it = v->FindMember(name.c_str());
    if (it == v->MemberEnd()) return NAN;
    v = &it->value;
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return v->IsNumber() ? v->GetDouble() : NAN;
}

std::string str_at(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  return it != obj.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

int mode_report(Options& o) {
  std::string path = o.str("results", "");
  o.check_all_used();
  std::ifstream in(path);
  if (!in) die("cannot read " + path);
  std::vector<std::unique_ptr<rapidjson::Document>> rows;
  long left_out = 0;
  std::map<std::string, long> failed;  // scenario -> runs marked "failed"
  std::string line;
  while (std::getline(in, line)) {
    auto d = std::make_unique<rapidjson::Document>();
    d->Parse(line.c_str());
    if (d->HasParseError() || !d->IsObject()) continue;
    auto noisy = d->FindMember("noisy");
    if (noisy != d->MemberEnd() && noisy->value.IsTrue()) {
      left_out++;
      continue;  // repeated because other processes were busy during it
    }
    auto fail = d->FindMember("failed");
    if (fail != d->MemberEnd() && fail->value.IsTrue()) {
      failed[str_at(*d, "scenario")]++;
      continue;  // a run that did not do what it measures (e.g. OTA without notifies): no numbers from it
    }
    rows.push_back(std::move(d));
  }
  // Values of `field` over the rows of a scenario and label.
  auto values = [&](const std::string& scenario, const std::string& label, const char* field) {
    std::vector<double> out;
    for (const auto& r : rows) {
      if (str_at(*r, "scenario") != scenario || str_at(*r, "label") != label) continue;
      double v = num_at(*r, field);
      if (!std::isnan(v)) out.push_back(v);
    }
    return out;
  };
  auto med = [&](const std::string& sc, const std::string& label, const char* field) {
    return median(values(sc, label, field));
  };
  auto show = [](double v, int decimals = 0) { return std::isnan(v) ? std::string("-") : fmt(v, decimals); };
  // CPU (ms) of iotgate's own work off the broker thread: the broker's other threads (before the store process)
  // plus the store process (since). `prefix` is where the run's cpu_ms object is.
  auto plugin_ms = [](const rapidjson::Value& r, const std::string& prefix) {
    double threads = num_at(r, (prefix + "cpu_ms.broker").c_str()) - num_at(r, (prefix + "cpu_ms.broker_main").c_str());
    double store = num_at(r, (prefix + "cpu_ms.store").c_str());
    return threads + (std::isnan(store) ? 0 : store);
  };
  // "median (min-max)" of a field, or just the value when there is one run.
  auto spread = [&](const std::string& sc, const std::string& label, const char* field) {
    auto v = values(sc, label, field);
    if (v.empty()) return std::string("-");
    std::string m = fmt(median(v), 0);
    if (v.size() < 2) return m;
    return m + " (" + fmt(*std::min_element(v.begin(), v.end()), 0) + "-" + fmt(*std::max_element(v.begin(), v.end()), 0) + ")";
  };
  // Runs of the same repetition ("round") take turns within seconds of each other; the host's load drifts more
  // between rounds than within one, so the ratio of the two brokers is taken per round and then its median.
  auto paired_ratios = [&](const std::string& sc, const std::string& label, const char* field) {
    std::map<double, double> base, other;
    std::map<std::string, int> seen;  // results written before runs carried their round: the n-th run of each
    for (const auto& r : rows) {
      if (str_at(*r, "scenario") != sc) continue;
      double round = num_at(*r, "round"), v = num_at(*r, field);
      if (std::isnan(round)) round = seen[str_at(*r, "label")]++;
      if (std::isnan(v)) continue;
      if (str_at(*r, "label") == "plain") base[round] = v;
      else if (str_at(*r, "label") == label) other[round] = v;
    }
    std::vector<double> out;
    for (const auto& [round, v] : other)
      if (auto b = base.find(round); b != base.end() && b->second > 0) out.push_back(v / b->second);
    return out;
  };
  // "median (min-max) over N rounds" of the paired ratios.
  auto paired_spread = [&](const std::vector<double>& v) {
    if (v.empty()) return std::string("-");
    if (v.size() < 2) return fmt(v[0], 2);
    return fmt(median(v), 2) + " (" + fmt(*std::min_element(v.begin(), v.end()), 2) + "-" +
           fmt(*std::max_element(v.begin(), v.end()), 2) + " over " + std::to_string(v.size()) + " rounds)";
  };
  auto verdict = [](double v, double target, bool at_least) {
    if (std::isnan(v)) return std::string("not measured");
    return (at_least ? v >= target : v <= target) ? std::string("**met**") : std::string("**not met**");
  };
  for (const auto& r : rows)
    if (str_at(*r, "mode") == "machine")
      std::printf("Run %s (%s mode) of iotgate %s: %s CPUs, %s, mosquitto %s, redis %s, kernel %s; niceness %s.\n\n",
                  str_at(*r, "date").c_str(), str_at(*r, "size").c_str(), str_at(*r, "commit").c_str(),
                  show(num_at(*r, "nproc")).c_str(),
                  (show(num_at(*r, "mem_kb") / 1048576.0, 1) + " GiB RAM").c_str(), str_at(*r, "mosquitto").c_str(),
                  str_at(*r, "redis").c_str(), str_at(*r, "kernel").c_str(), str_at(*r, "nice").c_str());

  std::printf("| scenario | plain mosquitto | mosquitto + iotgate | password_file | iotgate / plain | target | |\n");
  std::printf("|---|---:|---:|---:|---:|---|---|\n");
  auto runs = [&](const std::string& sc) { return values(sc, "iotgate", "rate").size() + values(sc, "iotgate", "delivered_rate").size(); };
  for (const char* pass : {"first", "warm"}) {
    std::string sc = std::string("connect-") + pass;
    double p = med(sc, "plain", "rate"), g = med(sc, "iotgate", "rate");
    double target = std::string(pass) == "first" ? 0.70 : 0.90;
    std::printf("| connect storm, %s login of each device (conn/s, median (min-max) of %zu) | %s | %s | %s | %s | >= %.2f | %s |\n",
                pass, runs(sc), spread(sc, "plain", "rate").c_str(), spread(sc, "iotgate", "rate").c_str(),
                spread(sc, "pwfile", "rate").c_str(), show(g / p, 2).c_str(), target,
                verdict(g / p, target, true).c_str());
  }
  {
    double g = median(values("connect-first", "iotgate", "rate")), f = median(values("connect-first", "pwfile", "rate"));
    double gw = median(values("connect-warm", "iotgate", "rate")), fw = median(values("connect-warm", "pwfile", "rate"));
    double worst = std::min(g / f, gw / fw);
    std::printf("| connect storm, iotgate / password_file (first, warm) | | | | %s, %s | > 1 | %s |\n", show(g / f, 2).c_str(),
                show(gw / fw, 2).c_str(), verdict(worst, 1.0000001, true).c_str());
  }
  {
    std::string sc = "connect-warm-redis-stopped";
    double p = med(sc, "plain", "rate"), g = med(sc, "iotgate", "rate");
    std::printf("| diagnostic: warm connect storm with redis-server stopped, so iotgate holds its login/logout writes "
                "instead of sending them (conn/s, median of %zu; plain measured right after) | %s | %s | | %s | | |\n",
                runs(sc), show(p).c_str(), show(g).c_str(), show(g / p, 2).c_str());
  }
  for (int qos : {0, 1}) {
    std::string sc = "publish-qos" + std::to_string(qos);
    auto ratios = paired_ratios(sc, "iotgate", "delivered_rate");
    std::printf("| publish QoS %d, devices on own topics -> 1 subscriber on /sys/# (msg/s delivered, median (min-max) of "
                "%zu; ratio: per round, median (min-max)) | %s | %s | | %s | >= 0.95 | %s |\n",
                qos, runs(sc), spread(sc, "plain", "delivered_rate").c_str(), spread(sc, "iotgate", "delivered_rate").c_str(),
                paired_spread(ratios).c_str(), verdict(ratios.empty() ? NAN : median(ratios), 0.95, true).c_str());
  }
  {
    std::string sc = "publish-qos0";
    // The no-op plugin (bench/noop_plugin.cpp), alone and with one idle thread: sharing the broker's descriptor
    // table, or with a table of its own as iotgate's threads took before the store process.
    struct Control {
      const char *label, *what, *source, *column;
    };
    const Control controls[] = {
        {"noop", "publish QoS 0 through mosquitto with a plugin that registers the same callbacks and returns at once",
         "bench/noop_plugin.cpp; ", "no-op plugin"},
        {"noopthread", "the same no-op plugin with one idle thread that shares the broker's file descriptor table", "",
         "that plugin"},
        {"noopown", "the same no-op plugin with one idle thread with a descriptor table of its own, as iotgate's threads had before the store process",
         "", "that plugin"}};
    for (const Control& c : controls)
      if (!values(sc, c.label, "delivered_rate").empty())
        std::printf("| control: %s (%smsg/s delivered, median (min-max) of %zu; column: %s; ratio per round) | %s | "
                    "%s | | %s | | |\n",
                    c.what, c.source, values(sc, c.label, "delivered_rate").size(), c.column,
                    spread(sc, "plain", "delivered_rate").c_str(), spread(sc, c.label, "delivered_rate").c_str(),
                    paired_spread(paired_ratios(sc, c.label, "delivered_rate")).c_str());
  }
  for (const auto& r : rows)
    if (str_at(*r, "mode") == "gate-micro")
      std::printf("| the core alone in a warm loop (bench/gate_micro.cpp): the publisher's write check + the "
                  "subscriber's read ACL of one delivered message (ns; no target) | | %s + %s = %s | | | | |\n",
                  show(num_at(*r, "publish_ns"), 1).c_str(), show(num_at(*r, "read_acl_ns"), 1).c_str(),
                  show(num_at(*r, "per_message_ns"), 1).c_str());
  {
    std::string sc = "publish-lierda";
    double p = med(sc, "plain", "delivered_rate"), g = med(sc, "iotgate", "delivered_rate");
    std::printf("| publish QoS 0 with Lierda uplink frames: iotgate answers each with an uplink_ack (QoS 1) to the "
                "device (msg/s delivered, median of %zu; no target) | %s | %s | | %s | | |\n",
                runs(sc), show(p).c_str(), show(g).c_str(), show(g / p, 2).c_str());
  }
  {
    double n = med("hold", "iotgate", "sessions");
    double dp = med("hold", "plain", "rss_after_kb") - med("hold", "plain", "rss_before_kb");
    double dg = med("hold", "iotgate", "rss_after_kb") - med("hold", "iotgate", "rss_before_kb");
    double per = (dg - dp) * 1024.0 / n;
    std::printf("| %s idle sessions: broker RSS growth (kB) / iotgate's extra bytes per session | %s | %s | | %s B | <= 1024 B | %s |\n",
                show(n).c_str(), show(dp).c_str(), show(dg).c_str(), show(per).c_str(), verdict(per, 1024, false).c_str());
    std::string iotgate_rss = show(med("hold", "iotgate", "rss_before_kb"));
    double store_rss = med("hold", "iotgate", "children_rss_kb");  // absent before the store process
    if (store_rss > 0) iotgate_rss += " + " + show(store_rss) + " (store process)";
    std::printf("| idle broker RSS before the sessions (kB; iotgate holds the device registry) | %s | %s | | | | |\n",
                show(med("hold", "plain", "rss_before_kb")).c_str(), iotgate_rss.c_str());
  }
  {
    double unstalled = med("publish-qos0", "iotgate", "delivered_rate");
    double during = med("stall", "iotgate", "stall.rate_during"), before = med("stall", "iotgate", "stall.rate_before");
    double after_r = med("stall", "iotgate", "stall.rate_after");
    double secs = med("stall", "iotgate", "stall.seconds");
    // Since the control run (bench/run.sh): the stall's seconds are judged against the same seconds of a run in
    // which a process that does nothing was stopped instead; before it, against the seconds before the stall.
    double control = med("stall-control", "iotgate", "stall.rate_during");
    double control_before = med("stall-control", "iotgate", "stall.rate_before");
    bool controlled = !std::isnan(control);
    if (controlled)
      std::printf("| Redis stopped (SIGSTOP) %s s during QoS 0 publishing to iotgate: msg/s during the stall / the same "
                  "seconds of a control run that stops a process doing nothing instead | | %s / %s | | %s | >= 0.90 | %s "
                  "|\n",
                  show(secs, 1).c_str(), show(during).c_str(), show(control).c_str(), show(during / control, 2).c_str(),
                  verdict(during / control, 0.90, true).c_str());
    const std::string subject =
        controlled ? "same" : "Redis stopped (SIGSTOP) " + show(secs, 1) + " s during QoS 0 publishing to iotgate";
    const std::string drift = controlled ? " (the control run: " + show(control) + " / " + show(control_before) + " = " +
                                               show(control / control_before, 2) + ", the drift of a run)"
                                         : std::string();
    std::printf("| %s: msg/s during the stall / before it in the same run%s | | %s / %s | | %s | %s | %s |\n",
                subject.c_str(), drift.c_str(), show(during).c_str(), show(before).c_str(),
                show(during / before, 2).c_str(), controlled ? "(>= 0.90)" : ">= 0.90",
                verdict(during / before, 0.90, true).c_str());
    std::printf("| same: msg/s during the stall / the unstalled iotgate QoS 0 runs above (other runs, other moments) | | "
                "%s / %s | | %s | (>= 0.90) | %s |\n",
                show(during).c_str(), show(unstalled).c_str(), show(during / unstalled, 2).c_str(),
                verdict(during / unstalled, 0.90, true).c_str());
    std::printf("| same run: msg/s after Redis resumed; longest delivery gap during / after the stall (ms) | | %s; %s / %s | | | | |\n",
                show(after_r).c_str(), show(med("stall", "iotgate", "stall.max_gap_during_ms")).c_str(),
                show(med("stall", "iotgate", "stall.max_gap_after_ms")).c_str());
    std::printf("| same run: CPU used by other processes before / during the stall (ms per second) | | %s / %s | | | | |\n",
                show(med("stall", "iotgate", "stall.others_ms_before") / med("stall", "iotgate", "stall.at")).c_str(),
                show(med("stall", "iotgate", "stall.others_ms_during") / secs).c_str());
    double ok = med("stall", "iotgate", "stall.logins.ok"), att = med("stall", "iotgate", "stall.logins.attempted");
    std::printf("| logins of known devices while Redis is stopped (accepted / attempted) | | %s / %s | | | all | %s |\n",
                show(ok).c_str(), show(att).c_str(),
                std::isnan(ok) ? "not measured" : (ok == att && att > 0 ? "**met**" : "**not met**"));
  }
  {
    // OTA: saturated reports/s, and latencies at the fixed rate. A failed OTA run voids the OTA rows.
    std::string sc = "ota";
    bool ota_failed = failed.count(sc) > 0;
    size_t n = values(sc, "iotgate", "saturation.rate").size();
    double devices = med(sc, "iotgate", "devices_up"), window = med(sc, "iotgate", "saturation.client_window");
    double rate = med(sc, "iotgate", "fixed.rate");
    auto pair = [&](const std::string& label, const char* a, const char* b) {
      if (ota_failed) return std::string("FAILED");
      return show(med(sc, label, a), 2) + " / " + show(med(sc, label, b), 2);
    };
    double p = med(sc, "plain", "saturation.rate"), g = med(sc, "iotgate", "saturation.rate");
    std::printf("| OTA: Lierda firmware_report -> firmware_report_ack, saturated: %s devices, at most %s unacknowledged "
                "report each; plain: an echo client answers as the platform (reports/s acked, median (min-max) of "
                "%zu; no target) | %s | %s | | %s | | |\n",
                show(devices).c_str(), show(window).c_str(), n, ota_failed ? "FAILED" : spread(sc, "plain", "saturation.rate").c_str(),
                ota_failed ? "FAILED" : spread(sc, "iotgate", "saturation.rate").c_str(), ota_failed ? "" : show(g / p, 2).c_str());
    std::printf("| OTA at a fixed %s reports/s: report -> firmware_report_ack latency, p50 / p99 (ms, median of %zu) | %s | "
                "%s | | | | |\n",
                show(rate).c_str(), n, pair("plain", "fixed.ack_ms.p50", "fixed.ack_ms.p99").c_str(),
                pair("iotgate", "fixed.ack_ms.p50", "fixed.ack_ms.p99").c_str());
    std::printf("| same runs: first report of each device -> its ota_notify, p50 / p99 (ms) | %s | %s | | | | |\n",
                pair("plain", "notify.ms.p50", "notify.ms.p99").c_str(), pair("iotgate", "notify.ms.p50", "notify.ms.p99").c_str());
  }
  for (const auto& [scenario, runs] : failed)
    std::printf("\n**%ld %s run(s) FAILED** (marked \"failed\" in the results file; the run's log says why): the "
                "table shows no numbers of that scenario.\n", runs, scenario.c_str());
  if (left_out > 0)
    std::printf("\n%ld run(s) left out and repeated because other processes used more than a quarter of a CPU during "
                "them (marked \"noisy\" in the results file).\n", left_out);
  std::printf("\nCPU per login in the connect storms (microseconds, median; broker = mosquitto's main thread, plugin = "
              "iotgate's store process (its threads in the broker before it), redis = redis-server, loadgen = the load generator, others = other processes on the "
              "machine during the run):\n\n");
  std::printf("| pass | broker | conn/s | broker main | plugin | redis | loadgen | others |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
  for (const char* pass : {"first", "warm", "warm-redis-stopped"})
    for (const char* label : {"plain", "iotgate", "pwfile"}) {
      std::string sc = std::string("connect-") + pass;
      std::vector<double> mainv, plug, red, lg, oth;
      for (const auto& r : rows) {
        if (str_at(*r, "scenario") != sc || str_at(*r, "label") != label) continue;
        double ok = num_at(*r, "ok");
        if (!(ok > 0)) continue;
        mainv.push_back(1000 * num_at(*r, "cpu_ms.broker_main") / ok);
        plug.push_back(1000 * plugin_ms(*r, "") / ok);
        red.push_back(1000 * num_at(*r, "cpu_ms.redis") / ok);
        lg.push_back(1000 * num_at(*r, "cpu_ms.loadgen") / ok);
        oth.push_back(1000 * num_at(*r, "cpu_ms.others") / ok);
      }
      if (mainv.empty()) continue;
      std::printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", pass, label, show(med(sc, label, "rate")).c_str(),
                  show(median(mainv)).c_str(), show(median(plug)).c_str(), show(median(red)).c_str(),
                  show(median(lg)).c_str(), show(median(oth)).c_str());
    }
  std::printf("\nCPU per delivered message while publishing (microseconds, median):\n\n");
  std::printf("| QoS | broker | msg/s | broker main | plugin | loadgen | others |\n|---|---|---:|---:|---:|---:|---:|\n");
  for (int qos : {0, 1})
    for (const char* label : {"plain", "iotgate", "noop", "noopthread", "noopown"}) {
      std::string sc = "publish-qos" + std::to_string(qos);
      std::vector<double> mainv, plug, lg, oth;
      for (const auto& r : rows) {
        if (str_at(*r, "scenario") != sc || str_at(*r, "label") != label) continue;
        double n = num_at(*r, "delivered");
        if (!(n > 0)) continue;
        mainv.push_back(1000 * num_at(*r, "cpu_ms.broker_main") / n);
        plug.push_back(1000 * plugin_ms(*r, "") / n);
        lg.push_back(1000 * num_at(*r, "cpu_ms.loadgen") / n);
        oth.push_back(1000 * num_at(*r, "cpu_ms.others") / n);
      }
      if (mainv.empty()) continue;
      std::printf("| %d | %s | %s | %s | %s | %s | %s |\n", qos, label, show(med(sc, label, "delivered_rate")).c_str(),
                  show(median(mainv), 1).c_str(), show(median(plug), 1).c_str(), show(median(lg), 1).c_str(),
                  show(median(oth), 1).c_str());
    }
  if (values("ota", "iotgate", "saturation.rate").empty() || failed.count("ota")) return 0;
  std::printf("\nCPU per firmware report in the OTA runs (microseconds, median; loadgen includes the echo client "
              "on plain):\n\n");
  std::printf("| phase | broker | reports/s | broker main | plugin | redis | loadgen | of which echo | others |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const char* phase : {"fixed", "saturation"})
    for (const char* label : {"plain", "iotgate"}) {
      std::string ph(phase);
      std::string count_field = ph + (ph == "fixed" ? ".sent" : ".acked"), rate_field = ph + (ph == "fixed" ? ".acked_rate" : ".rate");
      std::vector<double> mainv, plug, red, lg, echo, oth;
      auto cpu = [&](const rapidjson::Value& r, const char* name) { return num_at(r, (ph + ".cpu_ms." + name).c_str()); };
      for (const auto& r : rows) {
        if (str_at(*r, "scenario") != "ota" || str_at(*r, "label") != label) continue;
        double n = num_at(*r, count_field.c_str());
        if (!(n > 0)) continue;
        mainv.push_back(1000 * cpu(*r, "broker_main") / n);
        plug.push_back(1000 * plugin_ms(*r, ph + ".") / n);
        red.push_back(1000 * cpu(*r, "redis") / n);
        lg.push_back(1000 * cpu(*r, "loadgen") / n);
        double e = cpu(*r, "echo");
        echo.push_back(std::isnan(e) ? 0 : 1000 * e / n);
        oth.push_back(1000 * cpu(*r, "others") / n);
      }
      if (mainv.empty()) continue;
      std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", phase, label, show(med("ota", label, rate_field.c_str())).c_str(),
                  show(median(mainv), 1).c_str(), show(median(plug), 1).c_str(), show(median(red), 1).c_str(),
                  show(median(lg), 1).c_str(), show(median(echo), 1).c_str(), show(median(oth), 1).c_str());
    }
  return 0;
}

void usage() {
  std::fprintf(stderr,
               "usage: iotgate_loadgen MODE [--option value]...\n"
               "modes:\n"
               "  populate --devices N [--prefix iotgate:]        RESP for redis-cli --pipe (product + N devices)\n"
               "  passwd   --devices N                            user:password lines for mosquitto_passwd -U\n"
               "  connect  --port P --count N [--first I] [--concurrency C] [--threads T] [--login v2t1|v2t0|userpass|anon]\n"
               "           [--keep] [--timeout S] [--ts UNIX] [--cpu name=pid,...] [--pass NAME]\n"
               "  publish  --port P --devices K [--first I] [--qos 0|1] [--duration S] [--warmup S] [--threads T]\n"
               "           [--window N] [--client-window N] [--burst N] [--spin] [--payload BYTES]\n"
               "           [--sub-user U --sub-pass P]\n"
               "           [--stall-pid PID --stall-at S --stall-for S --stall-logins N --stall-first I] [--cpu ...]\n"
               "  hold     --port P --count N [--first I] [--broker-pid PID] [--settle S] [--duration S|0=until signal]\n"
               "  ota      --port P --count K [--first I] [--rate R] [--warmup S] [--duration S] [--sat-duration S|0]\n"
               "           [--gap S] [--drain S] [--client-window N] [--threads T] [--qos 0|1] [--echo] [--cpu ...]\n"
               "           [--from-version V --target-version V --target-url U --target-md5 M --target-size N\n"
               "            --task-name NAME] [--hard-version V]\n"
               "  report   --results FILE.jsonl                   the Markdown table of a bench/run.sh results file\n"
               "common: --label NAME --scenario NAME --host 127.0.0.1 --openid --product-id --product-key\n"
               "        --eui-prefix BENCH --seed N\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  std::string mode = argv[1];
  if (mode == "-h" || mode == "--help") {
    usage();
    return 0;
  }
  sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // inherited by every thread; the signal thread takes them
  signal(SIGPIPE, SIG_IGN);
  start_signal_thread();
  std::atexit(resume_stopped);
  raise_nofile();
  Options o(argc, argv, 2);
  if (mode == "populate") return mode_populate(o);
  if (mode == "passwd") return mode_passwd(o);
  if (mode == "report") return mode_report(o);
  mosquitto_lib_init();
  int rc = 2;
  if (mode == "connect") rc = mode_connect(o);
  else if (mode == "publish") rc = mode_publish(o);
  else if (mode == "hold") rc = mode_hold(o);
  else if (mode == "ota") rc = mode_ota(o);
  else {
    usage();
    rc = 2;
  }
  resume_stopped();
  mosquitto_lib_cleanup();
  return rc;
}
