// The TcpStore wire format and blocking socket helpers shared by its client and server.
//
// Every message is a frame: a 4-byte little-endian payload length, then the payload. A request payload is
// an Op byte followed by its fields; a reply payload is a Reply byte followed by its fields. Fields are
// 8-byte little-endian integers or strings (4-byte little-endian length, then the bytes).
//   handshake(token)                 -> kOk | kRefused (then the server closes the connection)
//   set(key, value)                  -> kOk
//   get(key, timeout_ms)             -> kOk value | kTimeout
//   add(key, delta)                  -> kOk new_value | kBadRequest message
//   wait(n, key * n, timeout_ms)     -> kOk | kTimeout
//   compare_set(key, expected, desired) -> kOk value
//   check(n, key * n)                -> kOk 0|1
//   delete_key(key)                  -> kOk 0|1
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gradflow::distributed::wire {

enum class Op : uint8_t { kHandshake = 1, kSet, kGet, kAdd, kWait, kCompareSet, kCheck, kDeleteKey };
enum class Reply : uint8_t { kOk = 0, kTimeout = 1, kRefused = 2, kBadRequest = 3 };

inline constexpr uint32_t kMaxFrameBytes = 1u << 30;    // after the handshake
inline constexpr uint32_t kMaxHandshakeBytes = 4096;    // before it: strangers cannot make us allocate
inline constexpr size_t kFrameHeaderBytes = 4;

// Builds one frame.
class Writer {
 public:
  Writer() : buf_(kFrameHeaderBytes, '\0') {}
  Writer& u8(uint8_t v) {
    buf_.push_back(static_cast<char>(v));
    return *this;
  }
  Writer& i64(int64_t v);
  Writer& str(std::string_view v);
  // The finished frame, length prefix filled in.
  std::string frame();

 private:
  std::string buf_;
};

// Reads the fields of one payload; each call returns false once the payload is exhausted or malformed.
class Reader {
 public:
  explicit Reader(std::string_view payload) : rest_(payload) {}
  bool u8(uint8_t* v);
  bool i64(int64_t* v);
  bool str(std::string* v);
  bool done() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

// Decodes a frame header.
uint32_t frame_length(const char* header);

using Clock = std::chrono::steady_clock;

// Sends all of bytes on a blocking socket by deadline. kUnavailable when the peer has gone (what names the
// call and address in the message), kDeadlineExceeded when the deadline passes.
absl::Status send_all(int fd, std::string_view bytes, Clock::time_point deadline, const std::string& what);

// Receives one frame's payload by deadline; same codes as send_all.
absl::StatusOr<std::string> recv_frame(int fd, Clock::time_point deadline, const std::string& what);

}  // namespace gradflow::distributed::wire
