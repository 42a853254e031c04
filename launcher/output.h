// OutputRelay: the ranks' stdout and stderr, line by line, onto gfrun's own, never interleaved
// mid-line: bytes are held until a whole line is in, and each line leaves in one write(). With
// --tag-output each line is prefixed as mpirun does ("[1,3]<stdout>:"); with --output-filename DIR each
// rank's output is also written to DIR/1/rank.N/stdout and stderr (OpenMPI 4's layout).
#pragma once

#include <map>
#include <tuple>
#include <optional>
#include <string>
#include <utility>

namespace gradflow::launcher {

enum class Stream { kStdout = 1, kStderr = 2 };

class OutputRelay {
 public:
  OutputRelay(bool tag, std::optional<std::string> output_dir);
  ~OutputRelay();
  OutputRelay(const OutputRelay&) = delete;
  OutputRelay& operator=(const OutputRelay&) = delete;

  // Bytes a rank wrote; whole lines go out now, a partial line waits for its end.
  // raw: relay the lines without a prefix or files (an agent's output, tagged and filed where it ran).
  void write(int rank, Stream stream, const char* data, size_t size, bool raw = false);
  // The rank closed the stream: a last line without a newline goes out with one.
  void close(int rank, Stream stream, bool raw = false);

  // The prefix of a line (empty when untagged).
  std::string prefix(int rank, Stream stream) const;

 private:
  void emit(int rank, Stream stream, const std::string& line, bool raw);  // line includes its '\n'
  int file_for(int rank, Stream stream);

  bool tag_;
  std::optional<std::string> output_dir_;
  std::map<std::tuple<int, Stream, bool>, std::string> pending_;
  std::map<std::pair<int, Stream>, int> files_;
};

// Writes all of data to fd, retrying after EINTR and partial writes; false when the fd is gone.
bool write_all(int fd, const char* data, size_t size);

}  // namespace gradflow::launcher
