#include "core/checkpoint/shards.h"

#include <algorithm>
#include <numeric>

#include "core/tensor/error.h"

namespace gradflow::checkpoint_files {
namespace {

constexpr char kSuffix[] = ".safetensors";

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

GeneratorState state_of(const nlohmann::json& j) {
  return {j.value("seed", uint64_t{0}), j.value("next_stream", uint64_t{0})};
}

bool is_of_kind(const std::string& file, const std::string& kind) {
  if (!file.ends_with(kSuffix)) return false;
  return file == kind + kSuffix || file.starts_with(kind + "-");
}

}  // namespace

std::string shard_file_name(const std::string& kind, int rank, int n) {
  return str_cat(kind, "-", rank, "-of-", n, kSuffix);
}

std::vector<int> assign_shards(const std::vector<std::pair<std::string, Tensor>>& tensors, int n) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto bytes = [&](size_t i) { return static_cast<uint64_t>(tensors[i].second.numel()) * dtype_size(tensors[i].second.dtype()); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return bytes(a) > bytes(b); });
  std::vector<uint64_t> load(static_cast<size_t>(n), 0);
  std::vector<int> rank_of(tensors.size(), 0);
  for (size_t i : order) {
    size_t least = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    rank_of[i] = static_cast<int>(least);
    load[least] += bytes(i);
  }
  return rank_of;
}

void keep_shard(Snapshot& snapshot, int rank, int n) {
  for (SnapshotFile& file : snapshot.files) {
    std::vector<int> rank_of = assign_shards(file.tensors, n);
    std::vector<std::pair<std::string, Tensor>> mine;
    for (size_t i = 0; i < file.tensors.size(); ++i) {
      if (rank_of[i] == rank) mine.push_back(std::move(file.tensors[i]));
    }
    file.tensors = std::move(mine);
    std::string kind = file.name.substr(0, file.name.size() - (sizeof(kSuffix) - 1));
    file.name = shard_file_name(kind, rank, n);
  }
}

MergedFiles merge_files(const std::string& path, const std::map<std::string, SafetensorsFile>& contents,
                        const std::string& kind) {
  MergedFiles merged;
  int files = 0;
  for (const auto& [name, file] : contents) {
    if (!is_of_kind(name, kind)) continue;
    std::string where = str_cat(path, "/", name);
    merged.label = name == kind + kSuffix ? where : where.substr(0, where.size() - name.size()) + kind + "-*" +
                                                       name.substr(name.find("-of-"));
    ++files;
    for (const auto& [variable, t] : file.tensors) {
      auto [it, inserted] = merged.origin.emplace(variable, where);
      if (!inserted) throw ValueError(str_cat(where, ": \"", variable, "\" is also in ", it->second));
      merged.tensors[variable] = t;
    }
  }
  if (files > 1 && contents.count(kind + kSuffix)) {
    throw ValueError(str_cat(path, ": holds both ", kind, kSuffix, " and shards of it"));
  }
  return merged;
}

std::optional<GeneratorState> replica_generator_state(const nlohmann::json& meta, int replica) {
  std::vector<GeneratorState> saved;
  if (meta.contains("rng_replicas") && meta["rng_replicas"].is_array()) {
    for (const nlohmann::json& r : meta["rng_replicas"]) saved.push_back(state_of(r));
  }
  if (saved.empty() && meta.contains("rng") && meta["rng"].is_object()) saved.push_back(state_of(meta["rng"]));
  if (saved.empty()) return std::nullopt;
  if (replica < static_cast<int>(saved.size())) return saved[static_cast<size_t>(replica)];
  GeneratorState base = saved[static_cast<size_t>(replica) % saved.size()];
  return GeneratorState{splitmix64(base.seed ^ splitmix64(static_cast<uint64_t>(replica))), base.next_stream};
}

}  // namespace gradflow::checkpoint_files
