// The messages between the broker and its store process (store_process.h), on a Unix stream socket. A frame is
// a 4-byte little-endian length, then that many bytes: a tag, then the message's fields. Everything crossing is
// strings, numbers and Redis hashes (Fields); a load crosses as raw records (LoadRecord), parsed on the broker's
// side. A frame that does not decode is a broken store process: the broker restarts it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "iotgate/store.h"
#include "iotgate/worker.h"

namespace iotgate::wire {

enum class Tag : uint8_t {
  job = 1,      // broker -> store: a StoreJob
  stop,         // broker -> store: write what is queued, say how much is left (held), and exit
  load_record,  // store -> broker: WorkerEvent...
  update,
  result,
  log,
  command,
  held,         // store -> broker: writes not yet in Redis, the last frame before it exits
  metrics,      // broker -> store: the broker's metric samples (metrics.h), for the store process's page
};

// Frames larger than this are refused (a whole OTA progress hash of a task with many devices fits).
inline constexpr size_t kMaxFrame = 256u << 20;

void put_job(std::string& out, const StoreJob& job);
void put_stop(std::string& out);
void put_event(std::string& out, const WorkerEvent& event);
void put_held(std::string& out, uint64_t writes);
void put_metrics(std::string& out, const Fields& samples);

struct Frame {
  Tag tag;
  std::string_view body;  // valid until the next call on the buffer it came from
};
// The first whole frame in `buffer`, its size in `*used`; nullopt when none is complete yet, and *used = SIZE_MAX
// when the bytes cannot be a frame.
std::optional<Frame> next_frame(std::string_view buffer, size_t* used);

std::optional<StoreJob> get_job(std::string_view body);
std::optional<WorkerEvent> get_event(Tag tag, std::string_view body);
std::optional<uint64_t> get_held(std::string_view body);
std::optional<Fields> get_metrics(std::string_view body);

}  // namespace iotgate::wire
