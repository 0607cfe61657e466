// Logging with per-reason rate limiting, so a flood of bad logins cannot flood the log.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

namespace iotgate {

enum class LogLevel { error = 0, warning = 1, notice = 2, info = 3, debug = 4 };
const char* to_string(LogLevel level);

class Log {
 public:
  using Sink = std::function<void(LogLevel, const std::string&)>;
  explicit Log(Sink sink, LogLevel level = LogLevel::info, int burst = 20, int window_seconds = 10);

  void set_level(LogLevel level) { level_ = level; }
  void set_rate(int burst, int window_seconds) { burst_ = burst; window_ = window_seconds; }
  bool enabled(LogLevel level) const { return level <= level_; }
  void write(LogLevel level, const std::string& message);
  // Like write, but at most `burst` lines per `reason` per window; the next line after a quiet spell says how many
  // were suppressed.
  void limited(LogLevel level, const std::string& reason, const std::string& message);

  void error(const std::string& m) { write(LogLevel::error, m); }
  void warning(const std::string& m) { write(LogLevel::warning, m); }
  void notice(const std::string& m) { write(LogLevel::notice, m); }
  void info(const std::string& m) { write(LogLevel::info, m); }
  void debug(const std::string& m) { write(LogLevel::debug, m); }

 private:
  struct Bucket {
    std::chrono::steady_clock::time_point window_start;
    int written = 0;
    uint64_t suppressed = 0;
  };
  Sink sink_;
  LogLevel level_;
  int burst_;
  int window_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace iotgate
