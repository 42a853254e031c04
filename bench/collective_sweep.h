// What the three collective benchmarks share, so that their numbers compare one for one: the flags of a
// size sweep, the sizes and iteration counts, the bandwidth formulas and the output (an nccl-tests-style
// table, or one JSON object per line). Plain C++ and nlohmann-json only: plain_mpi_allreduce and
// plain_gloo_allreduce include it without linking gradflow.
//
//   SweepFlags flags;
//   if (!parse_sweep_flags(argc, argv, "plain_mpi_allreduce", {}, &flags)) return 2;
//   for (int64_t bytes : settle_sizes(flags)) ... repeats_for(flags, bytes).warmup untimed ops ...
//   for (int64_t bytes : sweep_sizes(flags)) {
//     Repeats r = repeats_for(flags, bytes);
//     ... r.warmup untimed ops, a barrier, r.iters timed ops, the max over ranks of the average ...
//     print_row(flags, {.op = "all_reduce", .size = bytes, ...});
//   }
//
// Columns, as nccl-tests prints them: size(B) is the op's larger buffer in bytes, count the element count
// passed to the op, time(us) the per-op time (the slowest rank's average), algbw = size / time in GB/s
// (1e9 bytes), busbw = algbw * bus_factor(op, ranks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace gradflow_bench {

struct SweepFlags {
  int64_t min_bytes = 8;
  int64_t max_bytes = int64_t{64} << 20;
  int iters = 20;
  int warmup = 5;
  // 0: every size runs `iters` timed ops. Otherwise a size of S bytes runs clamp(iters_bytes / S, 5, iters)
  // of them, so that big sizes do not dominate the run time (see repeats_for).
  int64_t iters_bytes = 0;
  bool json = false;
  std::map<std::string, std::string> extra;  // the program's own "--name value" flags, by name
};

// "4096", "4K", "64M", "1G" (binary multiples, as nccl-tests reads -b/-e); -1 when malformed or < 1.
inline int64_t parse_bytes(std::string_view text) {
  if (text.empty()) return -1;
  int64_t multiplier = 1;
  switch (text.back()) {
    case 'K': case 'k': multiplier = int64_t{1} << 10; break;
    case 'M': case 'm': multiplier = int64_t{1} << 20; break;
    case 'G': case 'g': multiplier = int64_t{1} << 30; break;
    default: break;
  }
  if (multiplier != 1) text.remove_suffix(1);
  if (text.empty() || text.size() > 12) return -1;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > (int64_t{1} << 40) / multiplier) return -1;  // 1 TiB is plenty
  return value * multiplier;
}

namespace detail {
inline bool fail(const char* program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program, message.c_str());
  return false;
}
inline bool parse_count(const char* program, const std::string& flag, const std::string& value, int minimum,
                        int* out) {
  char* end = nullptr;
  long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < minimum || v > 1'000'000'000) {
    return fail(program, flag + ": expected an integer >= " + std::to_string(minimum) + ", got \"" + value + "\"");
  }
  *out = static_cast<int>(v);
  return true;
}
}  // namespace detail

// Parses --min-bytes, --max-bytes, --iters, --warmup, --iters-bytes, --json and the "--name value" flags
// named in `extra` (into flags->extra). On an unknown flag, a missing or malformed value, or
// min > max, prints "<program>: ..." naming the flag and returns false (the caller exits 2).
inline bool parse_sweep_flags(int argc, char** argv, const char* program, const std::vector<std::string>& extra,
                              SweepFlags* flags) {
  using detail::fail;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--json") {
      flags->json = true;
      continue;
    }
    bool known = flag == "--min-bytes" || flag == "--max-bytes" || flag == "--iters" || flag == "--warmup" ||
                 flag == "--iters-bytes" || std::find(extra.begin(), extra.end(), flag) != extra.end();
    if (!known) return fail(program, "unknown flag " + flag);
    if (i + 1 >= argc) return fail(program, flag + " needs a value");
    std::string value = argv[++i];
    if (flag == "--min-bytes" || flag == "--max-bytes" || flag == "--iters-bytes") {
      int64_t bytes = parse_bytes(value);
      if (bytes < 1) return fail(program, flag + ": expected a byte count such as 8, 4K, 64M or 1G, got \"" + value + "\"");
      (flag == "--min-bytes" ? flags->min_bytes : flag == "--max-bytes" ? flags->max_bytes : flags->iters_bytes) = bytes;
    } else if (flag == "--iters") {
      if (!detail::parse_count(program, flag, value, 1, &flags->iters)) return false;
    } else if (flag == "--warmup") {
      if (!detail::parse_count(program, flag, value, 0, &flags->warmup)) return false;
    } else {
      flags->extra[flag] = value;
    }
  }
  if (flags->min_bytes > flags->max_bytes) {
    return fail(program, "--min-bytes (" + std::to_string(flags->min_bytes) + ") is larger than --max-bytes (" +
                             std::to_string(flags->max_bytes) + ")");
  }
  return true;
}

// min_bytes, 2 * min_bytes, ... up to max_bytes (nccl-tests' -f 2).
inline std::vector<int64_t> sweep_sizes(const SweepFlags& flags) {
  std::vector<int64_t> sizes;
  for (int64_t b = flags.min_bytes; b <= flags.max_bytes; b *= 2) sizes.push_back(b);
  return sizes;
}

// Before the sweep, as nccl-tests does: untimed ops at the largest size, then at the smallest, so that
// the first sizes timed do not pay for the job's start (connections, first-touch of memory, the launcher's
// own start-up work on a small machine).
inline std::vector<int64_t> settle_sizes(const SweepFlags& flags) {
  std::vector<int64_t> sizes = sweep_sizes(flags);
  return {sizes.back(), sizes.front()};
}

struct Repeats {
  int warmup;
  int iters;
};

// Without --iters-bytes: (warmup, iters) for every size. With it, a size of `bytes` runs
// iters = clamp(iters_bytes / bytes, 5, iters) timed ops after min(warmup, max(1, iters / 4)) untimed ones.
inline Repeats repeats_for(const SweepFlags& flags, int64_t bytes) {
  if (flags.iters_bytes <= 0) return {flags.warmup, flags.iters};
  int64_t budget = flags.iters_bytes / std::max<int64_t>(bytes, 1);
  int iters = static_cast<int>(std::clamp<int64_t>(budget, std::min(5, flags.iters), flags.iters));
  return {std::min(flags.warmup, std::max(1, iters / 4)), iters};
}

// nccl-tests' bus bandwidth factors: what each rank must send (and receive) relative to `size`.
inline double bus_factor(std::string_view op, int ranks) {
  double n = ranks;
  if (op == "all_reduce") return 2 * (n - 1) / n;
  if (op == "all_gather" || op == "reduce_scatter") return (n - 1) / n;
  return 1;  // broadcast
}

struct Row {
  std::string program;  // "collective_bench", "plain_mpi_allreduce", ...
  std::string backend;  // "mpi", "gloo", "nccl"
  std::string op;       // "all_reduce", ...
  int ranks = 1;
  int64_t size = 0;   // bytes, as the size(B) column
  int64_t count = 0;  // elements, as the count column
  std::string type;   // "f32", ...
  int warmup = 0;
  int iters = 0;
  double time_us = 0;  // the slowest rank's average per op
};

inline void print_header(const SweepFlags& flags, const Row& first) {
  if (flags.json) return;
  std::printf("# %s: %s, backend %s, %d ranks, %s%s\n", first.program.c_str(), first.op.c_str(),
              first.backend.c_str(), first.ranks, first.type.c_str(),
              first.op == "all_reduce" || first.op == "reduce_scatter" ? ", sum" : "");
  std::printf("# iters %d, warmup %d", flags.iters, flags.warmup);
  if (flags.iters_bytes > 0) std::printf(", iters-bytes %lld", static_cast<long long>(flags.iters_bytes));
  std::printf("\n#\n# %10s %12s %6s %10s %12s %12s\n", "size(B)", "count", "type", "time(us)", "algbw(GB/s)",
              "busbw(GB/s)");
  std::fflush(stdout);
}

inline void print_row(const SweepFlags& flags, const Row& row) {
  double algbw = row.time_us > 0 ? static_cast<double>(row.size) / (row.time_us * 1e-6) / 1e9 : 0;
  double busbw = algbw * bus_factor(row.op, row.ranks);
  if (flags.json) {
    nlohmann::json j = {{"program", row.program}, {"backend", row.backend}, {"op", row.op},
                        {"ranks", row.ranks},     {"size", row.size},       {"count", row.count},
                        {"type", row.type},       {"warmup", row.warmup},   {"iters", row.iters},
                        {"time_us", row.time_us}, {"algbw", algbw},         {"busbw", busbw}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("  %10lld %12lld %6s %10.2f %12.3f %12.3f\n", static_cast<long long>(row.size),
                static_cast<long long>(row.count), row.type.c_str(), row.time_us, algbw, busbw);
  }
  std::fflush(stdout);
}

}  // namespace gradflow_bench
