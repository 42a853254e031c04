// A stand-in for libFuzzer's main() where the compiler is not clang: it runs LLVMFuzzerTestOneInput on
// every seed, then on random mutations of them (bit flips, byte sets, inserts, deletes, copies, splices,
// boundary integers) until a time or run budget is spent. It takes libFuzzer's flags so one command line
// serves both:
//   idx_fuzz [-max_total_time=S] [-runs=N] [-seed=N] [-max_len=N] CORPUS_DIR_OR_FILE...
// There is no coverage feedback; the harness is built with ASan/UBSan, and a crash saves the input as
// ./crash-<run> (via the sanitizer death callback or a signal handler) before the process dies.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) && __has_include(<sanitizer/common_interface_defs.h>)
#include <sanitizer/common_interface_defs.h>
#define GF_HAVE_SANITIZER_CALLBACK 1
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

const std::string* g_current = nullptr;  // the input being run, for the crash handlers
char g_crash_name[64] = "crash-input";

void save_current_input() {  // async-signal-safe: open/write/close only
  if (g_current == nullptr) return;
  int fd = ::open(g_crash_name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  ssize_t ignored = ::write(fd, g_current->data(), g_current->size());
  (void)ignored;
  ::close(fd);
  const char msg[] = "fuzz_driver: crashing input saved\n";
  ignored = ::write(2, msg, sizeof msg - 1);
}

void on_signal(int sig) {
  save_current_input();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Values at the edges of integer types, as little- and big-endian bytes: lengths and counts that lie.
const uint64_t kInteresting[] = {
    0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0xffffffff, uint64_t{1} << 32, uint64_t{1} << 62, ~uint64_t{0}};

void mutate(std::string& s, const std::vector<std::string>& pool, std::mt19937_64& rng, size_t max_len) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  switch (rng() % 8) {
    case 0:  // flip a bit
      if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
      break;
    case 1:  // set a byte
      if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng());
      break;
    case 2: {  // insert random bytes
      std::string ins(1 + pick(8), '\0');
      for (char& c : ins) c = static_cast<char>(rng());
      s.insert(pick(s.size() + 1), ins);
      break;
    }
    case 3:  // delete a range
      if (!s.empty()) {
        size_t at = pick(s.size());
        s.erase(at, 1 + pick(std::min<size_t>(16, s.size() - at)));
      }
      break;
    case 4:  // duplicate a range elsewhere
      if (!s.empty()) {
        size_t at = pick(s.size());
        std::string piece = s.substr(at, 1 + pick(32));
        s.insert(pick(s.size() + 1), piece);
      }
      break;
    case 5: {  // splice with another input
      const std::string& other = pool[pick(pool.size())];
      s = s.substr(0, pick(s.size() + 1)) + other.substr(pick(other.size() + 1));
      break;
    }
    case 6:  // truncate
      s.resize(pick(s.size() + 1));
      break;
    default: {  // overwrite with a boundary integer, little- or big-endian, 1 to 8 bytes
      if (s.empty()) break;
      uint64_t v = kInteresting[pick(std::size(kInteresting))];
      size_t width = size_t{1} << pick(4), at = pick(s.size());
      bool big = rng() % 2;
      for (size_t i = 0; i < width && at + i < s.size(); ++i) {
        s[at + i] = static_cast<char>(v >> (8 * (big ? width - 1 - i : i)));
      }
    }
  }
  if (s.size() > max_len) s.resize(max_len);
}

}  // namespace

int main(int argc, char** argv) {
  double max_total_time = 10;
  uint64_t runs = ~uint64_t{0}, seed = 1;
  size_t max_len = 4096;
  std::vector<std::string> pool;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* flag) { return arg.substr(std::strlen(flag)); };
    if (arg.rfind("-max_total_time=", 0) == 0)
      max_total_time = std::stod(value("-max_total_time="));
    else if (arg.rfind("-runs=", 0) == 0)
      runs = std::stoull(value("-runs="));
    else if (arg.rfind("-seed=", 0) == 0)
      seed = std::stoull(value("-seed="));
    else if (arg.rfind("-max_len=", 0) == 0)
      max_len = std::stoull(value("-max_len="));
    else if (arg.rfind("-", 0) == 0)
      continue;  // other libFuzzer flags mean nothing here
    else if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        if (entry.is_regular_file()) pool.push_back(read_file(entry.path()));
      }
    } else if (std::filesystem::is_regular_file(arg)) {
      pool.push_back(read_file(arg));
    } else {
      std::fprintf(stderr, "fuzz_driver: %s is neither a file nor a directory\n", arg.c_str());
      return 2;
    }
  }
  size_t seeds = pool.size();
  if (pool.empty()) pool.push_back("");
  for (const std::string& p : pool) max_len = std::max(max_len, p.size());
#ifdef GF_HAVE_SANITIZER_CALLBACK
  __sanitizer_set_death_callback(save_current_input);
#endif
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) ::signal(sig, on_signal);

  auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  uint64_t n = 0;
  auto run = [&](const std::string& input) {
    g_current = &input;
    std::snprintf(g_crash_name, sizeof g_crash_name, "crash-%llu", static_cast<unsigned long long>(n));
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    g_current = nullptr;
    ++n;
  };
  for (size_t i = 0; i < pool.size(); ++i) run(pool[i]);  // every seed once, whatever the budget
  std::mt19937_64 rng(seed);
  while (n < runs && elapsed() < max_total_time) {
    std::string input = pool[rng() % pool.size()];
    for (int k = 1 + static_cast<int>(rng() % 4); k > 0; --k) mutate(input, pool, rng, max_len);
    run(input);
    if (rng() % 64 == 0 && pool.size() < 4096) pool.push_back(std::move(input));  // deeper mutation chains
  }
  std::printf("fuzz_driver: %llu runs (%zu seeds, then mutations) in %.1f s, no failure\n",
              static_cast<unsigned long long>(n), seeds, elapsed());
  return 0;
}
