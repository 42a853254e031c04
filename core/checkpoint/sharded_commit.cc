#include "core/checkpoint/sharded_commit.h"

#include <cstdio>
#include <filesystem>

#include "core/checkpoint/shards.h"
#include "core/tensor/error.h"

namespace gradflow::checkpoint_files {
namespace {

// A rank's slots in barrier 2: failed, generator state (4 words), then per file kind: present, size
// (2 words), sha256 (8 words).
constexpr size_t kMaxFiles = 2;  // model, optimizer
constexpr size_t kPerFile = 11;
constexpr size_t kPerRank = 5 + kMaxFiles * kPerFile;

void put64(double* at, uint64_t v) {
  at[0] = static_cast<double>(v >> 32);
  at[1] = static_cast<double>(v & 0xffffffffu);
}
uint64_t get64(const double* at) { return (static_cast<uint64_t>(at[0]) << 32) | static_cast<uint64_t>(at[1]); }

void put_sha(double* at, const std::string& hex) {
  for (size_t w = 0; w < 8; ++w) at[w] = static_cast<double>(std::stoul(hex.substr(8 * w, 8), nullptr, 16));
}
std::string get_sha(const double* at) {
  std::string hex;
  char word[9];
  for (size_t w = 0; w < 8; ++w) {
    std::snprintf(word, sizeof(word), "%08x", static_cast<unsigned>(static_cast<uint32_t>(at[w])));
    hex += word;
  }
  return hex;
}

std::string attempt(const std::function<void()>& work) {
  try {
    work();
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

// Throws on every rank when any failed: flags[r * stride] != 0 marks rank r.
void agree(const std::vector<double>& all, size_t stride, int n, const std::string& where, const char* stage,
           const std::string& my_error) {
  std::string failed;
  for (int r = 0; r < n; ++r) {
    if (all[static_cast<size_t>(r) * stride] != 0) failed += str_cat(failed.empty() ? "" : ", ", r);
  }
  if (failed.empty()) return;
  throw Error(str_cat(where, ": sharded save failed on rank(s) ", failed, " while ", stage,
                      "; nothing was committed", my_error.empty() ? "" : str_cat(" (this rank: ", my_error, ")")));
}

std::vector<double> flag(int n, int rank, const std::string& error) {
  std::vector<double> flags(static_cast<size_t>(n), 0.0);
  flags[static_cast<size_t>(rank)] = error.empty() ? 0.0 : 1.0;
  return flags;
}

}  // namespace

std::string commit_sharded(const std::string& dir, const Snapshot& mine, const RankSums& ranks,
                           const std::function<void(const std::string& final_dir)>& after_commit) {
  const int n = ranks.ranks, rank = ranks.rank;
  if (mine.files.size() > kMaxFiles) throw Error(str_cat(dir, ": a sharded save holds at most ", kMaxFiles, " kinds of file"));
  // One name for all ranks (they must write into the same directory); a crashed job's leftover of the
  // same step is removed by rank 0 before anyone writes.
  const std::string tmp = str_cat(dir, "/.ckpt-", mine.step, ".tmp-", n, "ranks");
  const std::string where = str_cat(dir, "/ckpt-", mine.step);

  std::string error = rank == 0 ? attempt([&] { fresh_directory(tmp); }) : "";
  agree(ranks.sum(flag(n, rank, error)), 1, n, where, "preparing the temporary directory", error);

  nlohmann::json files;
  error = attempt([&] {
    files = write_snapshot_files(tmp, mine);
    if (mine.before_commit) mine.before_commit(mine.step);
  });
  std::vector<double> slots(static_cast<size_t>(n) * kPerRank, 0.0);
  double* at = &slots[static_cast<size_t>(rank) * kPerRank];
  at[0] = error.empty() ? 0.0 : 1.0;
  // The state at save(): an async commit runs on another thread, after training has drawn more.
  put64(at + 1, mine.meta.at("rng").at("seed").get<uint64_t>());
  put64(at + 3, mine.meta.at("rng").at("next_stream").get<uint64_t>());
  if (error.empty()) {
    for (size_t f = 0; f < mine.files.size(); ++f) {
      const nlohmann::json& entry = files[mine.files[f].name];
      double* file = at + 5 + f * kPerFile;
      file[0] = 1;
      put64(file + 1, entry["bytes"].get<uint64_t>());
      put_sha(file + 3, entry["sha256"].get<std::string>());
    }
  }
  std::vector<double> all = ranks.sum(slots);
  try {
    agree(all, kPerRank, n, where, "writing its shard files", error);
  } catch (const Error&) {
    std::error_code ignored;  // the error being thrown says what matters
    if (rank == 0) std::filesystem::remove_all(tmp, ignored);
    throw;
  }

  error = "";
  if (rank == 0) {
    error = attempt([&] {
      nlohmann::json meta = mine.meta;
      meta["world_size"] = n;
      meta["shards"] = n;
      meta["files"] = nlohmann::json::object();
      meta["rng_replicas"] = nlohmann::json::array();
      for (int r = 0; r < n; ++r) {
        const double* theirs = &all[static_cast<size_t>(r) * kPerRank];
        meta["rng_replicas"].push_back({{"seed", get64(theirs + 1)}, {"next_stream", get64(theirs + 3)}});
        for (size_t f = 0; f < mine.files.size(); ++f) {
          const double* file = theirs + 5 + f * kPerFile;
          if (file[0] == 0) throw Error(str_cat(where, ": rank ", r, " reported no file of kind ", f));
          std::string kind = mine.files[f].name.substr(0, mine.files[f].name.find('-'));
          meta["files"][shard_file_name(kind, r, n)] = {{"bytes", get64(file + 1)}, {"sha256", get_sha(file + 3)}};
        }
      }
      std::string final_dir = commit_directory(dir, tmp, mine.step, meta);
      if (after_commit) after_commit(final_dir);
    });
  }
  agree(ranks.sum(flag(n, rank, error)), 1, n, where, "committing (meta.json, rename, latest)", error);
  return where;
}

}  // namespace gradflow::checkpoint_files
