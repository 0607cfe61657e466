// A string of up to N - 1 bytes held inside its N-byte object; a longer one goes to the heap. The registry keeps a
// few per device, a million devices to a broker: std::string (32 bytes, 15 inline) put most device ids and every
// 32-digit secret on the heap, one allocation each (docs/architecture.md, "How it grows with the fleet").
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace iotgate {

template <size_t N>
class CompactString {
  static_assert(N >= 16 && N <= 128, "the heap pointer and length must fit before the last byte, which holds the "
                                    "inline length (below kOnHeap)");

 public:
  CompactString() noexcept { bytes_[N - 1] = 0; }
  // Explicit: a literal or a std::string compared with one converts to std::string_view, not to this.
  explicit CompactString(std::string_view s) { assign(s); }
  CompactString(const CompactString& other) { assign(other.view()); }
  CompactString(CompactString&& other) noexcept {
    std::memcpy(bytes_, other.bytes_, N);
    other.bytes_[N - 1] = 0;
  }
  CompactString& operator=(const CompactString& other) {
    if (this != &other) *this = other.view();
    return *this;
  }
  CompactString& operator=(CompactString&& other) noexcept {
    if (this != &other) {
      release();
      std::memcpy(bytes_, other.bytes_, N);
      other.bytes_[N - 1] = 0;
    }
    return *this;
  }
  CompactString& operator=(std::string_view s) {
    CompactString copy(s);  // s may point into this
    return *this = std::move(copy);
  }
  CompactString& operator=(const std::string& s) { return *this = std::string_view(s); }
  CompactString& operator=(const char* s) { return *this = std::string_view(s); }
  ~CompactString() { release(); }

  std::string_view view() const noexcept {
    if (!on_heap()) return std::string_view(bytes_, static_cast<unsigned char>(bytes_[N - 1]));
    return std::string_view(heap_data(), heap_size());
  }
  operator std::string_view() const noexcept { return view(); }
  std::string str() const { return std::string(view()); }
  bool empty() const noexcept { return view().empty(); }
  size_t size() const noexcept { return view().size(); }

  friend bool operator==(const CompactString& a, std::string_view b) noexcept { return a.view() == b; }

 private:
  // On the heap: the pointer in bytes 0-7, the length in bytes 8-11.
  static constexpr unsigned char kOnHeap = 0xFF;

  bool on_heap() const noexcept { return static_cast<unsigned char>(bytes_[N - 1]) == kOnHeap; }
  char* heap_data() const noexcept {
    char* p;
    std::memcpy(&p, bytes_, sizeof p);
    return p;
  }
  uint32_t heap_size() const noexcept {
    uint32_t n;
    std::memcpy(&n, bytes_ + sizeof(char*), sizeof n);
    return n;
  }
  void assign(std::string_view s) {
    if (s.size() < N) {
      std::memcpy(bytes_, s.data(), s.size());
      bytes_[N - 1] = static_cast<char>(s.size());
      return;
    }
    const uint32_t n = static_cast<uint32_t>(s.size());  // ids and secrets: far below 4 GiB
    char* p = new char[n];
    std::memcpy(p, s.data(), n);
    std::memcpy(bytes_, &p, sizeof p);
    std::memcpy(bytes_ + sizeof p, &n, sizeof n);
    bytes_[N - 1] = static_cast<char>(kOnHeap);
  }
  void release() noexcept {
    if (on_heap()) delete[] heap_data();
    bytes_[N - 1] = 0;
  }

  char bytes_[N];
};

}  // namespace iotgate
