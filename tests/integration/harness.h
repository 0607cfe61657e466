// Test harness for iotgate integration tests: real redis-server, real mosquitto, real MQTT clients.
//
// Every process started here runs in its own process group, gets SIGKILL when the test process dies
// (PR_SET_PDEATHSIG; start servers from the main thread or a thread that outlives them), and is killed and
// reaped (waitpid) by the owning object's destructor, so failing tests leave neither strays nor zombies.
//
// Environment knobs: IOTGATE_KEEP_TEMP=1 keeps temporary directories (log files) for inspection;
// IOTGATE_MOSQUITTO / IOTGATE_REDIS_SERVER / IOTGATE_REDIS_CLI override the binaries.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <mosquitto.h>

namespace iotgate::test {

// ---------------------------------------------------------------------------------------------------------
// Temporary directories, ports

std::string make_temp_dir();  // mkdtemp under $TMPDIR or /tmp ("iotgate-test-XXXXXX"); throws on failure

struct TempDir {
  std::string path;
  TempDir();
  ~TempDir();  // removes the tree (unless IOTGATE_KEEP_TEMP is set)
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
};

int free_port();  // binds 127.0.0.1:0, reads the port, closes

// Whole contents of a file ("" when it does not exist).
std::string read_file(const std::string& path);
// The last `lines` lines of a file.
std::string tail_file(const std::string& path, size_t lines = 30);

// ---------------------------------------------------------------------------------------------------------
// Child processes

// A child started with fork/exec, in its own process group, stdin from /dev/null, stdout and stderr appended
// to `output_path` (or discarded when empty). Killed (SIGKILL) and reaped by the destructor.
class Process {
 public:
  Process() = default;
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Throws std::runtime_error when the program cannot be executed.
  void spawn(const std::vector<std::string>& argv, const std::string& output_path,
             const std::map<std::string, std::string>& env = {});
  bool running();                 // reaps it (non-blocking) when it has exited
  pid_t pid() const { return pid_; }
  void signal(int sig);           // no-op when not running
  // Waits until it exits; true when it did within the timeout (then it is reaped).
  bool wait(std::chrono::milliseconds timeout);
  // SIGTERM (plus SIGCONT, in case it is stopped), wait up to `grace`, then SIGKILL. Returns true if it
  // exited before the SIGKILL was needed.
  bool terminate(std::chrono::milliseconds grace);
  void kill_now();                // SIGKILL + reap
  // Raw waitpid status of the last exit (valid once it has been reaped), -1 before.
  int exit_status() const { return status_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

// ---------------------------------------------------------------------------------------------------------
// Commands

struct CommandResult {
  int exit_code;     // exit status; 128+signal when killed by a signal; -1 on timeout
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv (argv[0] looked up in PATH unless it contains '/') with the current environment plus `env`
// (added or overriding), stdin from /dev/null, capturing stdout and stderr. When the command is still
// running after `timeout` its process group is killed and exit_code is -1, timed_out true.
// When argv[0] cannot be executed, exit_code is 127 and err says why.
CommandResult run_command(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
                          std::chrono::milliseconds timeout = std::chrono::seconds(120));

// ---------------------------------------------------------------------------------------------------------
// Redis

class RedisServer {  // redis-server on 127.0.0.1:<port>, appendonly yes, dir inside its own TempDir
 public:
  // extra_args are appended to the redis-server command line (e.g. {"--maxmemory", "10mb"}).
  explicit RedisServer(std::vector<std::string> extra_args = {});
  ~RedisServer();  // kills it if still running
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  void start();    // waits until PING answers (timeout 10 s, throws on failure); no-op when running
  // Appended to the command line from the next start on (e.g. {"--key-load-delay", "1000"}).
  void add_start_args(const std::vector<std::string>& args);
  void stop();     // SIGTERM + wait (data persisted by AOF); SIGKILL after 10 s
  void kill();     // SIGKILL + wait
  void pause();    // SIGSTOP
  void resume();   // SIGCONT
  void restart();  // stop + start on the SAME port and dir (data kept)
  bool running() const;
  pid_t pid() const;

  int port() const;
  std::string uri() const;  // "redis://127.0.0.1:<port>/0"
  const std::string& dir() const;
  std::string log() const;  // contents of the redis log file

  // Sends PING over a fresh TCP connection; true when +PONG arrives within the timeout.
  bool ping(std::chrono::milliseconds timeout = std::chrono::seconds(1));

  // Runs redis-cli -h 127.0.0.1 -p <port> --raw <args...>; returns stdout with surrounding whitespace
  // trimmed ("" when redis-cli timed out, 10 s by default).
  std::string cli(const std::vector<std::string>& args);
  std::string cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout);
  // Same, with the whole result (untrimmed).
  CommandResult cli_result(const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  void launch_and_wait(bool allow_port_change);
  TempDir dir_;
  std::vector<std::string> extra_args_;
  int port_;
  mutable Process proc_;
  bool ever_started_ = false;
};

// ---------------------------------------------------------------------------------------------------------
// Mosquitto

class Broker {  // mosquitto with a generated config
 public:
  explicit Broker(std::map<std::string, std::string> plugin_opts = {}, bool with_plugin = true,
                  std::vector<std::string> extra_conf_lines = {});
  ~Broker();  // SIGTERM (2 s grace) then SIGKILL if still running
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Writes the conf, starts `mosquitto -c conf` and waits (10 s) until it is accepting connections (its
  // "mosquitto version ... running" log line, or a TCP connect when logging does not go to the log file).
  // Throws with the tail of its log/output when it exits or does not become ready. No-op when running.
  void start();
  void stop();     // SIGTERM + wait (SIGKILL after 10 s)
  void kill();     // SIGKILL + wait
  void restart();  // stop + start; same port and conf
  void pause();    // SIGSTOP
  void resume();   // SIGCONT
  int port() const;
  bool running() const;  // process alive
  pid_t pid() const;
  int exit_status() const;  // raw waitpid status of the last exit (-1 before)

  const std::string& dir() const;
  std::string conf_path() const;
  std::string log_path() const;
  std::string output_path() const;  // mosquitto's own stdout/stderr
  std::string conf() const;         // the generated configuration text

  std::string log() const;  // whole log file contents so far
  size_t log_size() const;  // current log length in bytes: use as `from` to look only at later lines

  // ECMAScript regex, matched against each log line (from byte offset `from` on); polls until found.
  bool wait_for_log(const std::string& regex, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  bool wait_for_log(const std::string& regex, std::chrono::milliseconds timeout, size_t from);
  size_t count_log(const std::string& regex) const;  // number of log lines matching
  size_t count_log(const std::string& regex, size_t from) const;

 private:
  void write_conf() const;
  void launch_and_wait(bool allow_port_change);
  std::map<std::string, std::string> plugin_opts_;
  bool with_plugin_;
  std::vector<std::string> extra_conf_lines_;
  TempDir dir_;
  int port_;
  mutable Process proc_;
  bool ever_started_ = false;
};

// ---------------------------------------------------------------------------------------------------------
// MQTT client

struct Message {
  std::string topic;
  std::string payload;
  int qos;
  bool retain;
};

// One libmosquitto client with its own network thread. The thread runs mosquitto_loop() and ends when the
// connection ends: there is never an automatic reconnect. connect() may be called again afterwards.
class MqttClient {
 public:
  // protocol: 4 = MQTT 3.1.1, 5 = MQTT 5. client_id "" lets the library/broker choose one (clean only).
  // clean = false on MQTT 5 also sends a session expiry interval (default 3600 s, see set_session_expiry).
  explicit MqttClient(std::string client_id, int protocol = 5, bool clean = true);
  ~MqttClient();  // disconnect + stop the thread + destroy
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Connects to 127.0.0.1:port and waits for the CONNACK. Returns the CONNACK reason code (0 = accepted;
  // refused login: 135 / 134 on MQTT 5, 5 on 3.1.1), or -1 on timeout or when the connection dropped
  // without a CONNACK (the connection is then closed).
  int connect(int port, const std::optional<std::string>& username, const std::optional<std::string>& password,
              std::chrono::milliseconds timeout = std::chrono::seconds(5), int keepalive = 30);
  void set_will(const std::string& topic, const std::string& payload, int qos = 0, bool retain = false);
  void clear_will();
  // Local address to connect from (e.g. "127.0.0.2", to look like another host to the broker); call before connect.
  void set_bind_address(std::string address) { bind_address_ = std::move(address); }
  // MQTT 5 only: session expiry interval sent in CONNECT (nullopt: default, i.e. none when clean, 3600 when not).
  void set_session_expiry(std::optional<uint32_t> seconds);

  // SUBSCRIBE and wait for the SUBACK: granted QoS / reason code of the filter (0,1,2 ok; >=128 refused),
  // -1 on timeout or when not connected.
  int subscribe(const std::string& filter, int qos = 1, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // UNSUBSCRIBE and wait for the UNSUBACK: 0 on success, -1 on timeout or when not connected.
  int unsubscribe(const std::string& filter, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // PUBLISH. QoS 0: 0 once written to the socket. QoS 1/2: the PUBACK/PUBREC/PUBCOMP MQTT 5 reason code
  // (0 success, 135 not authorized, ...; always 0 on 3.1.1), except that 16 "no matching subscribers" (a
  // success mosquitto sends when nobody is subscribed) is returned as 0: see last_publish_reason().
  // -1 on timeout, when not connected or when the connection drops first.
  int publish(const std::string& topic, const std::string& payload, int qos = 1, bool retain = false,
              std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // The unmodified reason code (or -1) of this client's last publish() call.
  int last_publish_reason() const;

  // Next received message whose topic matches the MQTT filter; non-matching messages stay queued.
  std::optional<Message> wait_message(const std::string& filter,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(5));
  std::vector<Message> drain();  // all queued messages, clearing the queue
  size_t queued() const;         // number of queued messages

  bool connected() const;
  // Waits until the connection is gone (returns true at once when not connected) or the timeout passes.
  bool wait_disconnected(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Reason of the last disconnect: the reason code of a DISCONNECT sent by the broker (MQTT 5), 0 after our
  // own clean disconnect, otherwise a libmosquitto error number (MOSQ_ERR_CONN_LOST = 7 when the broker just
  // closed the connection, as mosquitto 2.0.11 does on a session takeover or a kick). -1 if never disconnected.
  int disconnect_reason() const;
  void disconnect();       // clean DISCONNECT, waits until done
  // Closes the TCP connection abruptly (no DISCONNECT), so the broker publishes the will. Waits until done.
  void drop_connection();
  const std::string& client_id() const { return client_id_; }

 private:
  static void on_connect(struct mosquitto*, void*, int, int, const mosquitto_property*);
  static void on_disconnect(struct mosquitto*, void*, int, const mosquitto_property*);
  static void on_subscribe(struct mosquitto*, void*, int, int, const int*, const mosquitto_property*);
  static void on_unsubscribe(struct mosquitto*, void*, int, const mosquitto_property*);
  static void on_publish(struct mosquitto*, void*, int, int, const mosquitto_property*);
  static void on_message(struct mosquitto*, void*, const struct mosquitto_message*, const mosquitto_property*);
  void network_loop();
  void stop_thread(std::chrono::milliseconds grace);  // waits for the thread to end, aborting after grace
  int wait_ack(std::map<int, int>& results, int mid, std::chrono::milliseconds timeout);

  std::string client_id_;
  int protocol_;
  bool clean_;
  std::optional<uint32_t> session_expiry_;
  std::string bind_address_;
  struct mosquitto* mosq_ = nullptr;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool thread_running_ = false;
  bool abort_ = false;        // network thread: shut the socket down
  bool connack_ = false;      // CONNACK received for the current connection
  int connack_rc_ = -1;
  bool connected_ = false;
  int disconnect_reason_ = -1;
  int last_publish_reason_ = -1;
  std::map<int, int> sub_results_;    // mid -> granted qos / reason
  std::map<int, int> unsub_results_;  // mid -> reason
  std::map<int, int> pub_results_;    // mid -> reason
  std::set<int> abandoned_;           // mids whose waiter gave up
  std::deque<Message> messages_;
};

// ---------------------------------------------------------------------------------------------------------
// CLI, JSON

// Runs IOTGATE_SOURCE_DIR "/scripts/iotgate" with the given args and env IOTGATE_REDIS=redis.uri(),
// IOTGATE_PREFIX=prefix.
CommandResult run_cli(const RedisServer& redis, const std::vector<std::string>& args,
                      const std::string& prefix = "iotgate:");

// String value of a top-level field of a JSON object ("" when absent, not a string or not valid JSON).
std::string json_string(const std::string& json, const char* field);

}  // namespace iotgate::test
