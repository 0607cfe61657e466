#include "iotgate/log.h"

namespace iotgate {

const char* to_string(LogLevel level) {
  switch (level) {
    case LogLevel::error: return "error";
    case LogLevel::warning: return "warning";
    case LogLevel::notice: return "notice";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
  }
  return "?";
}

Log::Log(Sink sink, LogLevel level, int burst, int window_seconds)
    : sink_(std::move(sink)), level_(level), burst_(burst), window_(window_seconds) {}

void Log::write(LogLevel level, const std::string& message) {
  if (enabled(level) && sink_) sink_(level, message);
}

void Log::limited(LogLevel level, const std::string& reason, const std::string& message) {
  if (!enabled(level)) return;
  auto now = std::chrono::steady_clock::now();
  Bucket& b = buckets_[reason];
  if (now - b.window_start >= std::chrono::seconds(window_)) {
    if (b.suppressed > 0)
      write(level, "iotgate: " + std::to_string(b.suppressed) + " more '" + reason + "' lines suppressed in the last " +
                       std::to_string(window_) + " s");
    b.window_start = now;
    b.written = 0;
    b.suppressed = 0;
  }
  if (b.written < burst_) {
    b.written++;
    write(level, message);
  } else {
    b.suppressed++;
  }
  if (buckets_.size() > 1024) buckets_.clear();  // reasons are a small fixed set; this only bounds misuse
}

}  // namespace iotgate
