#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mqtt_protocol.h>
#include <rapidjson/document.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

extern char** environ;

#ifndef IOTGATE_PLUGIN_PATH
#define IOTGATE_PLUGIN_PATH "iotgate.so"
#endif
#ifndef IOTGATE_SOURCE_DIR
#define IOTGATE_SOURCE_DIR "."
#endif

namespace iotgate::test {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kPollInterval = 5ms;

std::string errno_text(int e) { return std::string(std::strerror(e)); }

[[noreturn]] void throw_errno(const std::string& what) {
  int e = errno;
  throw std::runtime_error(what + ": " + errno_text(e));
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

bool is_executable_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// PATH lookup done in the parent (execvp is not async-signal-safe after fork in a threaded process).
std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "";
  dirs += ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    start = end + 1;
  }
  return name;  // execve fails with ENOENT, reported to the caller
}

std::string program_path(const char* env_override, const std::string& preferred, const std::string& name) {
  if (const char* v = std::getenv(env_override); v != nullptr && *v != '\0') return v;
  if (!preferred.empty() && is_executable_file(preferred)) return preferred;
  return find_executable(name);
}

int open_cloexec(const char* path, int flags, mode_t mode = 0644) {
  int fd = ::open(path, flags | O_CLOEXEC, mode);
  if (fd < 0) throw_errno(std::string("open ") + path);
  return fd;
}

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
};

// fork + execve. The child gets its own process group, SIGKILL when the parent thread dies, default signal
// dispositions and an empty signal mask, stdin from /dev/null and the given stdout/stderr (-1: /dev/null).
// Returns the pid; throws when the program could not be executed (the child is reaped then).
pid_t spawn_child(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env, int out_fd,
                  int err_fd) {
  if (argv.empty()) throw std::invalid_argument("spawn: empty argv");

  // Everything the child needs is prepared before fork().
  const std::string exe = find_executable(argv[0]);
  std::vector<char*> c_argv;
  c_argv.reserve(argv.size() + 1);
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);

  std::vector<std::string> env_strings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    std::string key = entry.substr(0, entry.find('='));
    if (env.count(key) == 0) env_strings.push_back(std::move(entry));
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> c_env;
  c_env.reserve(env_strings.size() + 1);
  for (auto& s : env_strings) c_env.push_back(s.data());
  c_env.push_back(nullptr);

  Fd devnull(open_cloexec("/dev/null", O_RDWR));
  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd err_r(errpipe[0]), err_w(errpipe[1]);

  const pid_t parent = ::getpid();
  const int dn = devnull.fd;
  const int ew = err_w.fd;
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig == SIGKILL || sig == SIGSTOP) continue;
      ::sigaction(sig, &sa, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int o = out_fd >= 0 ? out_fd : dn;
    int e = err_fd >= 0 ? err_fd : dn;
    if (::dup2(dn, 0) < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) {
      int code = errno;
      (void)!::write(ew, &code, sizeof code);
      ::_exit(127);
    }
    ::execve(exe.c_str(), c_argv.data(), c_env.data());
    int code = errno;
    (void)!::write(ew, &code, sizeof code);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, so a group kill works immediately (may fail after exec)
  err_w.reset();
  int code = 0;
  ssize_t n;
  do {
    n = ::read(err_r.fd, &code, sizeof code);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof code)) {
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    throw std::runtime_error("cannot execute " + exe + ": " + errno_text(code));
  }
  return pid;
}

int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n\v\f";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::string read_file_from(const std::string& path, size_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < 0 || static_cast<size_t>(size) <= offset) return "";
  in.seekg(static_cast<std::streamoff>(offset));
  std::string data(static_cast<size_t>(size) - offset, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

size_t file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<size_t>(st.st_size);
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string tail_text(const std::string& text, size_t lines) {
  if (text.empty()) return text;
  size_t pos = text.size();
  if (text.back() == '\n') --pos;
  size_t count = 0;
  while (pos > 0) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    if (++count >= lines) return text.substr(nl + 1);
    pos = nl;
  }
  return text;
}

// Non-blocking TCP connect to 127.0.0.1:port within the timeout. Returns the connected fd or -1.
int tcp_connect(int port, std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  if (rc != 0) {
    pollfd p{fd, POLLOUT, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    int err = 0;
    socklen_t len = sizeof err;
    if (n != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

bool contains_addr_in_use(const std::string& text) {
  return text.find("Address already in use") != std::string::npos ||
         text.find("address already in use") != std::string::npos;
}

struct LibInit {
  LibInit() { mosquitto_lib_init(); }
};

void ensure_lib_init() { static LibInit init; }

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Temporary directories, ports, files

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/iotgate-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw_errno("mkdtemp " + tmpl);
  return std::string(buf.data());
}

TempDir::TempDir() : path(make_temp_dir()) {}

TempDir::~TempDir() {
  if (path.empty()) return;
  if (env_flag("IOTGATE_KEEP_TEMP")) return;
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

TempDir::TempDir(TempDir&& other) noexcept : path(std::move(other.path)) { other.path.clear(); }

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path.empty() && !env_flag("IOTGATE_KEEP_TEMP")) {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
    path = std::move(other.path);
    other.path.clear();
  }
  return *this;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  Fd guard(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind 127.0.0.1:0");
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) throw_errno("getsockname");
  return ntohs(addr.sin_port);
}

std::string read_file(const std::string& path) { return read_file_from(path, 0); }

std::string tail_file(const std::string& path, size_t lines) { return tail_text(read_file(path), lines); }

// ---------------------------------------------------------------------------------------------------------
// Process

Process::~Process() { kill_now(); }

void Process::spawn(const std::vector<std::string>& argv, const std::string& output_path,
                    const std::map<std::string, std::string>& env) {
  if (running()) throw std::logic_error("Process::spawn: already running");
  Fd out;
  if (!output_path.empty()) out.reset(open_cloexec(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND));
  pid_ = spawn_child(argv, env, out.fd, out.fd);
  status_ = -1;
}

bool Process::running() {
  if (pid_ <= 0) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    status_ = st;
  }
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    pid_ = -1;
    return false;
  }
  return true;  // EINTR: assume still there
}

void Process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

bool Process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (running()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
  return true;
}

bool Process::terminate(std::chrono::milliseconds grace) {
  if (!running()) return true;
  ::kill(pid_, SIGTERM);
  ::kill(pid_, SIGCONT);
  if (wait(grace)) return true;
  kill_now();
  return false;
}

void Process::kill_now() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, 0);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) status_ = st;
  pid_ = -1;
}

// ---------------------------------------------------------------------------------------------------------
// run_command

CommandResult run_command(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                          std::chrono::milliseconds timeout) {
  CommandResult result{-1, "", "", false};
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

  pid_t pid;
  try {
    pid = spawn_child(argv, env, out_w.fd, err_w.fd);
  } catch (const std::exception& e) {
    result.exit_code = 127;
    result.err = e.what();
    return result;
  }
  out_w.reset();
  err_w.reset();

  const auto deadline = Clock::now() + timeout;
  bool exited = false;
  int status = 0;
  Clock::time_point exited_at{};
  bool killed = false;
  char buf[8192];
  while (out_r.fd >= 0 || err_r.fd >= 0) {
    pollfd fds[2];
    nfds_t n = 0;
    if (out_r.fd >= 0) fds[n++] = pollfd{out_r.fd, POLLIN, 0};
    if (err_r.fd >= 0) fds[n++] = pollfd{err_r.fd, POLLIN, 0};
    int pr = ::poll(fds, n, 20);
    if (pr < 0 && errno != EINTR) break;
    for (nfds_t i = 0; pr > 0 && i < n; ++i) {
      if (fds[i].revents == 0) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      std::string& target = fds[i].fd == out_r.fd ? result.out : result.err;
      if (got > 0) {
        target.append(buf, static_cast<size_t>(got));
      } else {
        (fds[i].fd == out_r.fd ? out_r : err_r).reset();
      }
    }
    if (!exited) {
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        exited = true;
        exited_at = Clock::now();
      }
    }
    const auto now = Clock::now();
    // A background grandchild may keep the pipes open: stop reading shortly after the child exited.
    if (exited && now - exited_at > 500ms) break;
    if (!exited && !killed && now >= deadline) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      killed = true;
    }
    if (killed && now >= deadline + 2s) break;
  }
  if (!exited) {
    if (killed) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
    }
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (killed) {
    result.timed_out = true;
    result.exit_code = -1;
  } else {
    result.exit_code = decode_status(status);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// RedisServer

RedisServer::RedisServer(std::vector<std::string> extra_args) : extra_args_(std::move(extra_args)), port_(free_port()) {}

RedisServer::~RedisServer() { proc_.kill_now(); }

void RedisServer::add_start_args(const std::vector<std::string>& args) {
  extra_args_.insert(extra_args_.end(), args.begin(), args.end());
}

void RedisServer::start() {
  if (proc_.running()) return;
  launch_and_wait(!ever_started_);
  ever_started_ = true;
}

void RedisServer::launch_and_wait(bool allow_port_change) {
  const std::string out_path = dir_.path + "/redis.out";
  const std::string log_path = dir_.path + "/redis.log";
  for (int attempt = 0;; ++attempt) {
    const size_t out_off = file_size(out_path);
    const size_t log_off = file_size(log_path);
    std::vector<std::string> argv = {program_path("IOTGATE_REDIS_SERVER", "/usr/bin/redis-server", "redis-server"),
                                     "--port", std::to_string(port_),
                                     "--bind", "127.0.0.1",
                                     "--protected-mode", "no",
                                     "--daemonize", "no",
                                     "--appendonly", "yes",
                                     "--appendfsync", "everysec",
                                     "--save", "",
                                     "--dir", dir_.path,
                                     "--dbfilename", "dump.rdb",
                                     "--logfile", log_path};
    argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
    proc_.spawn(argv, out_path);

    const auto deadline = Clock::now() + 10s;
    bool exited = false;
    while (Clock::now() < deadline) {
      if (!proc_.running()) {
        exited = true;
        break;
      }
      if (ping(200ms)) return;
      std::this_thread::sleep_for(kPollInterval);
    }
    std::string output = read_file_from(out_path, out_off) + read_file_from(log_path, log_off);
    if (exited && allow_port_change && attempt < 5 && contains_addr_in_use(output)) {
      port_ = free_port();
      continue;
    }
    int status = proc_.exit_status();
    proc_.kill_now();
    std::ostringstream msg;
    msg << "redis-server on port " << port_ << (exited ? " exited during start" : " did not answer PING within 10 s");
    if (exited) msg << " (status " << decode_status(status) << ")";
    msg << "; output:\n" << tail_text(output, 30);
    throw std::runtime_error(msg.str());
  }
}

void RedisServer::stop() { proc_.terminate(10s); }

void RedisServer::kill() { proc_.kill_now(); }

void RedisServer::pause() { proc_.signal(SIGSTOP); }

void RedisServer::resume() { proc_.signal(SIGCONT); }

void RedisServer::restart() {
  stop();
  launch_and_wait(false);
  ever_started_ = true;
}

bool RedisServer::running() const { return proc_.running(); }

pid_t RedisServer::pid() const { return proc_.pid(); }

int RedisServer::port() const { return port_; }

std::string RedisServer::uri() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

const std::string& RedisServer::dir() const { return dir_.path; }

std::string RedisServer::log() const { return read_file(dir_.path + "/redis.log"); }

bool RedisServer::ping(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int fd = tcp_connect(port_, timeout);
  if (fd < 0) return false;
  Fd guard(fd);
  static const char kPing[] = "PING\r\n";
  if (::send(fd, kPing, sizeof kPing - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof kPing - 1)) return false;
  std::string reply;
  char buf[256];
  while (reply.find("\r\n") == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    ssize_t got = ::recv(fd, buf, sizeof buf, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) return false;
    reply.append(buf, static_cast<size_t>(got));
  }
  return reply.rfind("+PONG", 0) == 0;
}

CommandResult RedisServer::cli_result(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {program_path("IOTGATE_REDIS_CLI", "/usr/bin/redis-cli", "redis-cli"),
                                   "-h", "127.0.0.1", "-p", std::to_string(port_), "--raw"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, {}, timeout);
}

std::string RedisServer::cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  CommandResult r = cli_result(args, timeout);
  if (r.timed_out) return "";
  return trim(r.out);
}

std::string RedisServer::cli(const std::vector<std::string>& args) { return cli(args, std::chrono::seconds(10)); }

// ---------------------------------------------------------------------------------------------------------
// Broker

Broker::Broker(std::map<std::string, std::string> plugin_opts, bool with_plugin,
               std::vector<std::string> extra_conf_lines)
    : plugin_opts_(std::move(plugin_opts)),
      with_plugin_(with_plugin),
      extra_conf_lines_(std::move(extra_conf_lines)),
      port_(free_port()) {}

Broker::~Broker() { proc_.terminate(2s); }

const std::string& Broker::dir() const { return dir_.path; }
std::string Broker::conf_path() const { return dir_.path + "/mosquitto.conf"; }
std::string Broker::log_path() const { return dir_.path + "/mosquitto.log"; }
std::string Broker::output_path() const { return dir_.path + "/mosquitto.out"; }

std::string Broker::conf() const {
  std::ostringstream c;
  // mosquitto wants per_listener_settings before any other security setting: a test's own line goes first.
  std::string per_listener = "per_listener_settings false";
  std::vector<std::string> extra;
  for (const auto& line : extra_conf_lines_) {
    if (line.rfind("per_listener_settings", 0) == 0) per_listener = line;
    else extra.push_back(line);
  }
  c << per_listener << "\n";
  c << "listener " << port_ << " 127.0.0.1\n";
  c << "allow_anonymous " << (with_plugin_ ? "false" : "true") << "\n";
  c << "persistence false\n";
  c << "log_dest file " << log_path() << "\n";
  c << "log_type all\n";
  c << "log_timestamp true\n";
  c << "log_timestamp_format %Y-%m-%dT%H:%M:%S\n";
  c << "connection_messages true\n";
  if (::geteuid() == 0) c << "user root\n";
  if (with_plugin_) {
    c << "plugin " << IOTGATE_PLUGIN_PATH << "\n";
    for (const auto& [k, v] : plugin_opts_) c << "plugin_opt_" << k << " " << v << "\n";
  }
  for (const auto& line : extra) c << line << "\n";
  return c.str();
}

void Broker::write_conf() const {
  const std::string path = conf_path();
  std::ofstream out(path, std::ios::trunc);
  out << conf();
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path);
}

void Broker::start() {
  if (proc_.running()) return;
  launch_and_wait(!ever_started_);
  ever_started_ = true;
}

void Broker::launch_and_wait(bool allow_port_change) {
  static const std::regex kRunning("mosquitto version \\S+ running");
  const std::string mosquitto = program_path("IOTGATE_MOSQUITTO", "/usr/sbin/mosquitto", "mosquitto");
  for (int attempt = 0;; ++attempt) {
    write_conf();
    const size_t log_off = file_size(log_path());
    const size_t out_off = file_size(output_path());
    const auto started = Clock::now();
    proc_.spawn({mosquitto, "-c", conf_path()}, output_path());

    const auto deadline = started + 10s;
    bool exited = false;
    while (Clock::now() < deadline) {
      if (!proc_.running()) {
        exited = true;
        break;
      }
      if (file_exists(log_path())) {
        std::string fresh = read_file_from(log_path(), log_off);
        if (std::regex_search(fresh, kRunning)) return;
      } else if (Clock::now() - started > 500ms) {
        // Logging goes elsewhere (extra conf lines): fall back to probing the port.
        int fd = tcp_connect(port_, 200ms);
        if (fd >= 0) {
          ::close(fd);
          return;
        }
      }
      std::this_thread::sleep_for(kPollInterval);
    }
    std::string output = read_file_from(output_path(), out_off);
    std::string log_text = read_file_from(log_path(), log_off);
    if (exited && allow_port_change && attempt < 5 && contains_addr_in_use(output + log_text)) {
      port_ = free_port();
      continue;
    }
    int status = proc_.exit_status();
    proc_.kill_now();
    std::ostringstream msg;
    msg << "mosquitto on port " << port_ << (exited ? " exited during start" : " did not become ready within 10 s");
    if (exited) msg << " (status " << decode_status(status) << ")";
    msg << "\n--- output ---\n" << tail_text(output, 30) << "\n--- log ---\n" << tail_text(log_text, 30)
        << "\n--- conf ---\n" << conf();
    throw std::runtime_error(msg.str());
  }
}

void Broker::stop() { proc_.terminate(10s); }

void Broker::kill() { proc_.kill_now(); }

void Broker::restart() {
  stop();
  launch_and_wait(false);
  ever_started_ = true;
}

void Broker::pause() { proc_.signal(SIGSTOP); }

void Broker::resume() { proc_.signal(SIGCONT); }

int Broker::port() const { return port_; }

bool Broker::running() const { return proc_.running(); }

pid_t Broker::pid() const { return proc_.pid(); }

int Broker::exit_status() const { return proc_.exit_status(); }

std::string Broker::log() const { return read_file(log_path()); }

size_t Broker::log_size() const { return file_size(log_path()); }

bool Broker::wait_for_log(const std::string& regex, std::chrono::milliseconds timeout) {
  return wait_for_log(regex, timeout, 0);
}

bool Broker::wait_for_log(const std::string& regex, std::chrono::milliseconds timeout, size_t from) {
  const std::regex re(regex, std::regex::ECMAScript);
  const auto deadline = Clock::now() + timeout;
  size_t scanned = from;  // byte offset of the first line not yet examined
  for (;;) {
    const bool last = Clock::now() >= deadline;
    std::string data = read_file_from(log_path(), scanned);
    size_t pos = 0;
    for (;;) {
      size_t nl = data.find('\n', pos);
      if (nl == std::string::npos) break;
      if (std::regex_search(data.begin() + static_cast<std::ptrdiff_t>(pos),
                            data.begin() + static_cast<std::ptrdiff_t>(nl), re)) {
        return true;
      }
      pos = nl + 1;
    }
    scanned += pos;
    if (last) {
      // The final look includes an unterminated last line.
      return pos < data.size() && std::regex_search(data.begin() + static_cast<std::ptrdiff_t>(pos), data.end(), re);
    }
    std::this_thread::sleep_for(10ms);
  }
}

size_t Broker::count_log(const std::string& regex) const { return count_log(regex, 0); }

size_t Broker::count_log(const std::string& regex, size_t from) const {
  const std::regex re(regex, std::regex::ECMAScript);
  std::string data = read_file_from(log_path(), from);
  size_t count = 0;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t nl = data.find('\n', pos);
    size_t end = nl == std::string::npos ? data.size() : nl;
    if (std::regex_search(data.begin() + static_cast<std::ptrdiff_t>(pos),
                          data.begin() + static_cast<std::ptrdiff_t>(end), re)) {
      ++count;
    }
    pos = end + 1;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------------------
// MqttClient

MqttClient::MqttClient(std::string client_id, int protocol, bool clean)
    : client_id_(std::move(client_id)), protocol_(protocol), clean_(clean) {
  ensure_lib_init();
  if (protocol_ != 3 && protocol_ != 4 && protocol_ != 5) throw std::invalid_argument("MqttClient: protocol must be 3, 4 or 5");
  mosq_ = mosquitto_new(client_id_.empty() ? nullptr : client_id_.c_str(), clean_, this);
  if (mosq_ == nullptr) throw_errno("mosquitto_new(" + client_id_ + ")");
  int version = protocol_ == 5 ? MQTT_PROTOCOL_V5 : protocol_ == 4 ? MQTT_PROTOCOL_V311 : MQTT_PROTOCOL_V31;
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, version);
  // We run mosquitto_loop() in our own thread: never an automatic reconnect.
  mosquitto_threaded_set(mosq_, true);
  mosquitto_connect_v5_callback_set(mosq_, &MqttClient::on_connect);
  mosquitto_disconnect_v5_callback_set(mosq_, &MqttClient::on_disconnect);
  mosquitto_subscribe_v5_callback_set(mosq_, &MqttClient::on_subscribe);
  mosquitto_unsubscribe_v5_callback_set(mosq_, &MqttClient::on_unsubscribe);
  mosquitto_publish_v5_callback_set(mosq_, &MqttClient::on_publish);
  mosquitto_message_v5_callback_set(mosq_, &MqttClient::on_message);
}

MqttClient::~MqttClient() {
  disconnect();
  mosquitto_destroy(mosq_);
}

void MqttClient::on_connect(struct mosquitto*, void* obj, int rc, int, const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard lock(self->mu_);
  self->connack_ = true;
  self->connack_rc_ = rc;
  self->connected_ = rc == 0;
  self->cv_.notify_all();
}

void MqttClient::on_disconnect(struct mosquitto*, void* obj, int rc, const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard lock(self->mu_);
  self->connected_ = false;
  self->disconnect_reason_ = rc;
  self->cv_.notify_all();
}

void MqttClient::on_subscribe(struct mosquitto*, void* obj, int mid, int qos_count, const int* granted,
                              const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard lock(self->mu_);
  if (self->abandoned_.erase(mid) > 0) return;
  self->sub_results_[mid] = qos_count > 0 && granted != nullptr ? granted[0] : -1;
  self->cv_.notify_all();
}

void MqttClient::on_unsubscribe(struct mosquitto*, void* obj, int mid, const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard lock(self->mu_);
  if (self->abandoned_.erase(mid) > 0) return;
  self->unsub_results_[mid] = 0;
  self->cv_.notify_all();
}

void MqttClient::on_publish(struct mosquitto*, void* obj, int mid, int rc, const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard lock(self->mu_);
  if (self->abandoned_.erase(mid) > 0) return;
  self->pub_results_[mid] = rc;
  self->cv_.notify_all();
}

void MqttClient::on_message(struct mosquitto*, void* obj, const struct mosquitto_message* msg,
                            const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  Message m{msg->topic != nullptr ? msg->topic : "",
            msg->payload != nullptr ? std::string(static_cast<const char*>(msg->payload),
                                                  static_cast<size_t>(msg->payloadlen))
                                    : std::string(),
            msg->qos, msg->retain};
  std::lock_guard lock(self->mu_);
  self->messages_.push_back(std::move(m));
  self->cv_.notify_all();
}

void MqttClient::network_loop() {
  for (;;) {
    bool abort_now;
    {
      std::lock_guard lock(mu_);
      abort_now = abort_;
      abort_ = false;
    }
    if (abort_now) {
      // Only this thread closes the socket while it runs, so the fd is ours.
      int fd = mosquitto_socket(mosq_);
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    }
    int rc = mosquitto_loop(mosq_, 20, 1);
    if (rc != MOSQ_ERR_SUCCESS) break;
  }
  std::lock_guard lock(mu_);
  thread_running_ = false;
  connected_ = false;
  cv_.notify_all();
}

void MqttClient::stop_thread(std::chrono::milliseconds grace) {
  if (!thread_.joinable()) return;
  {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, grace, [&] { return !thread_running_; })) {
      abort_ = true;
      cv_.wait(lock, [&] { return !thread_running_; });
    }
  }
  thread_.join();
  std::lock_guard lock(mu_);
  abort_ = false;
}

int MqttClient::connect(int port, const std::optional<std::string>& username,
                        const std::optional<std::string>& password, std::chrono::milliseconds timeout,
                        int keepalive) {
  disconnect();  // a previous connection (cleanly) and its thread, if any
  {
    std::lock_guard lock(mu_);
    connack_ = false;
    connack_rc_ = -1;
    connected_ = false;
    abort_ = false;
  }
  int rc = mosquitto_username_pw_set(mosq_, username ? username->c_str() : nullptr,
                                     password ? password->c_str() : nullptr);
  if (rc != MOSQ_ERR_SUCCESS) {
    throw std::invalid_argument(std::string("mosquitto_username_pw_set: ") + mosquitto_strerror(rc));
  }
  mosquitto_property* props = nullptr;
  if (protocol_ == 5) {
    std::optional<uint32_t> expiry = session_expiry_;
    if (!expiry && !clean_) expiry = 3600;
    if (expiry && *expiry > 0) mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, *expiry);
  }
  rc = mosquitto_connect_bind_v5(mosq_, "127.0.0.1", port, keepalive,
                                 bind_address_.empty() ? nullptr : bind_address_.c_str(), props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) return -1;

  {
    std::lock_guard lock(mu_);
    thread_running_ = true;
  }
  thread_ = std::thread([this] { network_loop(); });

  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return connack_ || !thread_running_; });
  if (connack_ && connack_rc_ == 0) return 0;
  const int result = connack_ ? connack_rc_ : -1;
  lock.unlock();
  // Refused (the library closes the connection itself) or no CONNACK: make sure it is closed.
  stop_thread(result == -1 ? 0ms : 1s);
  return result;
}

void MqttClient::set_will(const std::string& topic, const std::string& payload, int qos, bool retain) {
  int rc = mosquitto_will_set_v5(mosq_, topic.c_str(), static_cast<int>(payload.size()), payload.data(), qos, retain,
                                 nullptr);
  if (rc != MOSQ_ERR_SUCCESS) throw std::invalid_argument(std::string("mosquitto_will_set: ") + mosquitto_strerror(rc));
}

void MqttClient::clear_will() { mosquitto_will_clear(mosq_); }

void MqttClient::set_session_expiry(std::optional<uint32_t> seconds) { session_expiry_ = seconds; }

int MqttClient::wait_ack(std::map<int, int>& results, int mid, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return results.count(mid) > 0 || !connected_; });
  auto it = results.find(mid);
  if (it != results.end()) {
    int r = it->second;
    results.erase(it);
    return r;
  }
  abandoned_.insert(mid);
  return -1;
}

int MqttClient::subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout) {
  if (!connected()) return -1;
  int mid = 0;
  if (mosquitto_subscribe_v5(mosq_, &mid, filter.c_str(), qos, 0, nullptr) != MOSQ_ERR_SUCCESS) return -1;
  return wait_ack(sub_results_, mid, timeout);
}

int MqttClient::unsubscribe(const std::string& filter, std::chrono::milliseconds timeout) {
  if (!connected()) return -1;
  int mid = 0;
  if (mosquitto_unsubscribe_v5(mosq_, &mid, filter.c_str(), nullptr) != MOSQ_ERR_SUCCESS) return -1;
  return wait_ack(unsub_results_, mid, timeout);
}

int MqttClient::publish(const std::string& topic, const std::string& payload, int qos, bool retain,
                        std::chrono::milliseconds timeout) {
  if (!connected()) {
    std::lock_guard lock(mu_);
    last_publish_reason_ = -1;
    return -1;
  }
  int mid = 0;
  int rc = mosquitto_publish_v5(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(), qos,
                                retain, nullptr);
  int reason = rc == MOSQ_ERR_SUCCESS ? wait_ack(pub_results_, mid, timeout) : -1;
  std::lock_guard lock(mu_);
  last_publish_reason_ = reason;
  return reason == MQTT_RC_NO_MATCHING_SUBSCRIBERS ? 0 : reason;
}

int MqttClient::last_publish_reason() const {
  std::lock_guard lock(mu_);
  return last_publish_reason_;
}

std::optional<Message> MqttClient::wait_message(const std::string& filter, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  for (;;) {
    for (auto it = messages_.begin(); it != messages_.end(); ++it) {
      bool match = false;
      if (mosquitto_topic_matches_sub(filter.c_str(), it->topic.c_str(), &match) == MOSQ_ERR_SUCCESS && match) {
        Message m = std::move(*it);
        messages_.erase(it);
        return m;
      }
    }
    if (Clock::now() >= deadline) return std::nullopt;
    cv_.wait_until(lock, deadline);
  }
}

std::vector<Message> MqttClient::drain() {
  std::lock_guard lock(mu_);
  std::vector<Message> out(std::make_move_iterator(messages_.begin()), std::make_move_iterator(messages_.end()));
  messages_.clear();
  return out;
}

size_t MqttClient::queued() const {
  std::lock_guard lock(mu_);
  return messages_.size();
}

bool MqttClient::connected() const {
  std::lock_guard lock(mu_);
  return connected_;
}

bool MqttClient::wait_disconnected(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return !connected_; });
}

int MqttClient::disconnect_reason() const {
  std::lock_guard lock(mu_);
  return disconnect_reason_;
}

void MqttClient::disconnect() {
  if (!thread_.joinable()) return;
  bool was_connected;
  {
    std::lock_guard lock(mu_);
    was_connected = thread_running_;
  }
  if (was_connected) mosquitto_disconnect(mosq_);
  stop_thread(2s);
}

void MqttClient::drop_connection() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    abort_ = true;
  }
  stop_thread(2s);
}

// ---------------------------------------------------------------------------------------------------------
// CLI, JSON

CommandResult run_cli(const RedisServer& redis, const std::vector<std::string>& args, const std::string& prefix) {
  std::vector<std::string> argv = {std::string(IOTGATE_SOURCE_DIR) + "/scripts/iotgate"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, {{"IOTGATE_REDIS", redis.uri()}, {"IOTGATE_PREFIX", prefix}});
}

std::string json_string(const std::string& json, const char* field) {
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return "";
  auto it = doc.FindMember(field);
  if (it == doc.MemberEnd() || !it->value.IsString()) return "";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace iotgate::test
