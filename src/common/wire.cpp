#include "iotgate/wire.h"

#include <cstring>

namespace iotgate::wire {
namespace {

// ---- writing: the frame's length is patched in when the message is complete.

size_t begin(std::string& out, Tag tag) {
  size_t at = out.size();
  out.append(4, '\0');
  out.push_back(static_cast<char>(tag));
  return at;
}
void end(std::string& out, size_t at) {
  uint32_t n = static_cast<uint32_t>(out.size() - at - 4);
  for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>((n >> (8 * i)) & 0xFF);
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
void put_str(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}
void put_fields(std::string& out, const Fields& f) {
  put_u64(out, f.size());
  for (const auto& [k, v] : f) {
    put_str(out, k);
    put_str(out, v);
  }
}
void put_opt_fields(std::string& out, const std::optional<Fields>& f) {
  put_u8(out, f.has_value());
  if (f) put_fields(out, *f);
}

// ---- reading: every read checks what is left; a short or inconsistent body leaves `ok` false.

struct Reader {
  std::string_view in;
  bool ok = true;
  uint64_t u64() {
    if (in.size() < 8) return fail();
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in[i])) << (8 * i);
    in.remove_prefix(8);
    return v;
  }
  uint8_t u8() {
    if (in.empty()) return static_cast<uint8_t>(fail());
    uint8_t v = static_cast<uint8_t>(in[0]);
    in.remove_prefix(1);
    return v;
  }
  bool flag() {
    uint8_t v = u8();
    if (v > 1) fail();
    return v == 1;
  }
  std::string str() {
    uint64_t n = u64();
    if (!ok || n > in.size()) {
      fail();
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
  Fields fields() {
    Fields f;
    uint64_t n = u64();
    if (n > in.size() / 16) fail();  // each pair takes at least two 8-byte lengths
    for (uint64_t i = 0; ok && i < n; ++i) {
      std::string k = str();
      std::string v = str();
      if (ok) f.insert_or_assign(std::move(k), std::move(v));
    }
    return f;
  }
  std::optional<Fields> opt_fields() {
    if (!flag()) return std::nullopt;
    return fields();
  }
  template <typename Enum>
  Enum enumeration(Enum last) {
    uint8_t v = u8();
    if (v > static_cast<uint8_t>(last)) fail();
    return static_cast<Enum>(v);
  }
  bool done() const { return ok && in.empty(); }
  uint64_t fail() {
    ok = false;
    return 0;
  }
};

}  // namespace

void put_job(std::string& out, const StoreJob& job) {
  size_t at = begin(out, Tag::job);
  put_u8(out, static_cast<uint8_t>(job.type));
  put_u64(out, job.token);
  put_u8(out, job.durable);
  if (job.type == StoreJob::Type::touch_device) {  // most jobs, and all they need
    const Touch& t = job.touch;
    put_str(out, t.product);
    put_str(out, t.device);
    put_u64(out, static_cast<uint64_t>(t.last_online));
    put_u64(out, static_cast<uint64_t>(t.last_offline));
    put_u8(out, t.activated);
    put_str(out, t.claim);
    put_u64(out, static_cast<uint64_t>(t.claim_at));
    put_u8(out, t.alive);
  } else {
    put_str(out, job.product);
    put_str(out, job.device);
    put_fields(out, job.fields);
    put_u8(out, job.create);
    put_str(out, job.origin);
    put_str(out, job.candidate_secret);
    put_u64(out, static_cast<uint64_t>(job.limit));
  }
  end(out, at);
}

void put_stop(std::string& out) { end(out, begin(out, Tag::stop)); }

void put_held(std::string& out, uint64_t writes) {
  size_t at = begin(out, Tag::held);
  put_u64(out, writes);
  end(out, at);
}

void put_metrics(std::string& out, const Fields& samples) {
  size_t at = begin(out, Tag::metrics);
  put_fields(out, samples);
  end(out, at);
}

void put_event(std::string& out, const WorkerEvent& event) {
  std::visit(
      [&out](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        size_t at;
        if constexpr (std::is_same_v<T, LoadRecord>) {
          at = begin(out, Tag::load_record);
          put_u8(out, static_cast<uint8_t>(e.kind));
          put_str(out, e.id);
          put_str(out, e.member);
          put_fields(out, e.fields);
        } else if constexpr (std::is_same_v<T, EntityUpdate>) {
          at = begin(out, Tag::update);
          put_u8(out, static_cast<uint8_t>(e.kind));
          put_str(out, e.id);
          put_opt_fields(out, e.fields);
        } else if constexpr (std::is_same_v<T, StoreResult>) {
          at = begin(out, Tag::result);
          put_u64(out, e.token);
          put_u8(out, e.ok);
          put_str(out, e.error);
          put_opt_fields(out, e.device);
        } else if constexpr (std::is_same_v<T, LogLine>) {
          at = begin(out, Tag::log);
          put_u8(out, static_cast<uint8_t>(e.level));
          put_str(out, e.text);
        } else {
          static_assert(std::is_same_v<T, Command>);
          at = begin(out, Tag::command);
          put_fields(out, e.fields);
        }
        end(out, at);
      },
      event);
}

std::optional<Frame> next_frame(std::string_view buffer, size_t* used) {
  *used = 0;
  if (buffer.size() < 4) return std::nullopt;
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(static_cast<uint8_t>(buffer[i])) << (8 * i);
  if (n == 0 || n > kMaxFrame) {
    *used = SIZE_MAX;
    return std::nullopt;
  }
  if (buffer.size() - 4 < n) return std::nullopt;
  *used = 4 + static_cast<size_t>(n);
  return Frame{static_cast<Tag>(buffer[4]), buffer.substr(5, n - 1)};
}

std::optional<StoreJob> get_job(std::string_view body) {
  Reader r{body};
  StoreJob job;
  job.type = r.enumeration(StoreJob::Type::retained);
  job.token = r.u64();
  job.durable = r.flag();
  if (job.type == StoreJob::Type::touch_device) {
    Touch& t = job.touch;
    t.product = r.str();
    t.device = r.str();
    t.last_online = static_cast<int64_t>(r.u64());
    t.last_offline = static_cast<int64_t>(r.u64());
    t.activated = r.flag();
    t.claim = r.str();
    t.claim_at = static_cast<int64_t>(r.u64());
    t.alive = r.flag();
  } else {
    job.product = r.str();
    job.device = r.str();
    job.fields = r.fields();
    job.create = r.flag();
    job.origin = r.str();
    job.candidate_secret = r.str();
    job.limit = static_cast<int64_t>(r.u64());
  }
  if (!r.done()) return std::nullopt;
  return job;
}

std::optional<Fields> get_metrics(std::string_view body) {
  Reader r{body};
  Fields samples = r.fields();
  if (!r.done()) return std::nullopt;
  return samples;
}

std::optional<WorkerEvent> get_event(Tag tag, std::string_view body) {
  Reader r{body};
  std::optional<WorkerEvent> event;
  switch (tag) {
    case Tag::load_record: {
      LoadRecord rec;
      rec.kind = r.enumeration(LoadRecord::Kind::end);
      rec.id = r.str();
      rec.member = r.str();
      rec.fields = r.fields();
      event = std::move(rec);
      break;
    }
    case Tag::update: {
      EntityUpdate u;
      u.kind = r.enumeration(EntityUpdate::Kind::task);
      u.id = r.str();
      u.fields = r.opt_fields();
      event = std::move(u);
      break;
    }
    case Tag::result: {
      StoreResult res;
      res.token = r.u64();
      res.ok = r.flag();
      res.error = r.str();
      res.device = r.opt_fields();
      event = std::move(res);
      break;
    }
    case Tag::log: {
      LogLine line;
      line.level = r.enumeration(LogLevel::debug);
      line.text = r.str();
      event = std::move(line);
      break;
    }
    case Tag::command:
      event = Command{r.fields()};
      break;
    default:
      return std::nullopt;
  }
  if (!r.done()) return std::nullopt;
  return event;
}

std::optional<uint64_t> get_held(std::string_view body) {
  Reader r{body};
  uint64_t n = r.u64();
  if (!r.done()) return std::nullopt;
  return n;
}

}  // namespace iotgate::wire
