#include "core/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/io/safetensors.h"
#include "core/nn/replica_context.h"
#include "core/tensor/error.h"
#include "core/tensor/random.h"
#include "nlohmann/json.hpp"

namespace gradflow {
namespace {

namespace fs = std::filesystem;
constexpr int kFormatVersion = 1;
constexpr char kFormat[] = "gradflow-checkpoint";

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) throw Error(str_cat(path, ": cannot open to sync"));
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw Error(str_cat(path, ": fsync failed"));
}

void write_text(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw Error(str_cat(path, ": cannot write"));
  }
  fsync_path(path, false);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str_cat(path, ": missing"));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::optional<int64_t> step_of(const std::string& name) {
  if (name.rfind("ckpt-", 0) != 0 || name.size() == 5) return std::nullopt;
  int64_t step = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return std::nullopt;
    step = step * 10 + (c - '0');
  }
  return step;
}

std::vector<std::pair<std::string, Tensor>> named_values(const std::vector<Variable>& vars) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const Variable& v : vars) out.emplace_back(v.name(), v.value_unwatched());
  return out;
}

optimizers::Optimizer* optimizer_of(ModelImpl& model) {
  return model.training ? model.training->optimizer.get() : nullptr;
}

// Checks that file holds a value for every variable, of its shape and dtype; the values to assign.
std::vector<Tensor> matching_values(const std::string& file, const SafetensorsFile& contents,
                                    const std::vector<Variable>& vars) {
  std::vector<Tensor> values;
  for (const Variable& v : vars) {
    auto it = contents.tensors.find(v.name());
    if (it == contents.tensors.end()) throw ValueError(str_cat(file, ": has no variable \"", v.name(), "\""));
    if (it->second.shape() != v.shape() || it->second.dtype() != v.dtype()) {
      throw ValueError(str_cat(file, ": \"", v.name(), "\" is ", shape_str(it->second.shape()), " ",
                               dtype_name(it->second.dtype()), " but the model's is ", shape_str(v.shape()), " ",
                               dtype_name(v.dtype())));
    }
    values.push_back(it->second.to(v.device()));
  }
  if (contents.tensors.size() != vars.size()) {
    for (const auto& [name, t] : contents.tensors) {
      bool known = std::any_of(vars.begin(), vars.end(), [&](const Variable& v) { return v.name() == name; });
      if (!known) throw ValueError(str_cat(file, ": holds \"", name, "\", which the model does not have"));
    }
  }
  return values;
}

}  // namespace

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str_cat(path, ": cannot open"));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    EVP_DigestUpdate(ctx, buffer.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_MD_CTX_free(ctx);
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

CheckpointManager::CheckpointManager(std::string dir, ModelImpl& model, CheckpointOptions options)
    : dir_(std::move(dir)), model_(model), options_(options) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error(str_cat(dir_, ": cannot create the checkpoint directory: ", ec.message()));
}

std::string CheckpointManager::save(int64_t step, int64_t epoch, const std::map<std::string, std::string>& extra) {
  std::vector<Variable> vars = model_.variables();
  if (vars.empty()) throw StateError(str_cat(dir_, ": save: the model has no variables yet (build it first)"));
  std::string final_dir = str_cat(dir_, "/ckpt-", step);
  std::string tmp = str_cat(dir_, "/.ckpt-", step, ".tmp-", ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  nlohmann::json meta{{"format", kFormat}, {"version", kFormatVersion}, {"step", step}, {"epoch", epoch},
                      {"world_size", 1}, {"extra", extra}};
  GeneratorState rng = global_generator().state();
  meta["rng"] = {{"seed", rng.seed}, {"next_stream", rng.next_stream}};
  if (!replica_rng_.empty()) {
    meta["rng_replicas"] = nlohmann::json::array();
    for (const GeneratorState& r : replica_rng_) meta["rng_replicas"].push_back({{"seed", r.seed}, {"next_stream", r.next_stream}});
  }
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, Tensor>>>> files{
      {"model.safetensors", named_values(vars)}};
  if (optimizers::Optimizer* opt = optimizer_of(model_)) {
    opt->build(model_.trainable_variables());
    files.push_back({"optimizer.safetensors", named_values(opt->variables())});
    meta["optimizer"] = {{"iterations", opt->iterations()}, {"learning_rate", opt->learning_rate()}};
  }
  for (const auto& [name, tensors] : files) {
    std::string path = str_cat(tmp, "/", name);
    absl::Status s = write_safetensors(path, tensors, {{"step", std::to_string(step)}}, {.fsync = true});
    if (!s.ok()) throw Error(std::string(s.message()));
    meta["files"][name] = {{"bytes", fs::file_size(path)}, {"sha256", sha256_file(path)}};
  }
  write_text(str_cat(tmp, "/meta.json"), meta.dump(2));
  fsync_path(tmp, true);
  if (fs::exists(final_dir)) fs::remove_all(final_dir);  // the same step saved again
  fs::rename(tmp, final_dir);
  fsync_path(dir_, true);
  write_text(str_cat(dir_, "/latest.tmp"), str_cat("ckpt-", step, "\n"));
  fs::rename(str_cat(dir_, "/latest.tmp"), str_cat(dir_, "/latest"));
  fsync_path(dir_, true);
  if (options_.max_to_keep > 0) {
    std::vector<std::string> all = checkpoints();
    for (size_t i = 0; i + options_.max_to_keep < all.size(); ++i) {
      if (all[i] != final_dir) fs::remove_all(all[i]);
    }
  }
  return final_dir;
}

CheckpointInfo CheckpointManager::restore(const std::string& path) {
  nlohmann::json meta = nlohmann::json::parse(read_text(str_cat(path, "/meta.json")), nullptr, false);
  if (meta.is_discarded() || !meta.is_object() || meta.value("format", "") != kFormat) {
    throw ValueError(str_cat(path, "/meta.json: not a gradflow checkpoint's metadata"));
  }
  if (meta.value("version", 0) != kFormatVersion) {
    throw ValueError(str_cat(path, "/meta.json: format version ", meta.value("version", 0), ", expected ", kFormatVersion));
  }
  // Verify every file before touching the model.
  std::map<std::string, SafetensorsFile> contents;
  if (!meta.contains("files") || !meta["files"].is_object()) throw ValueError(str_cat(path, "/meta.json: no files listed"));
  for (auto it = meta["files"].begin(); it != meta["files"].end(); ++it) {
    std::string file = str_cat(path, "/", it.key());
    if (!fs::exists(file)) throw ValueError(str_cat(file, ": missing"));
    uint64_t bytes = fs::file_size(file);
    if (bytes != it.value().value("bytes", uint64_t{0})) {
      throw ValueError(str_cat(file, ": ", bytes, " bytes, meta.json says ", it.value().value("bytes", uint64_t{0})));
    }
    if (sha256_file(file) != it.value().value("sha256", "")) throw ValueError(str_cat(file, ": sha256 does not match meta.json"));
    absl::StatusOr<SafetensorsFile> f = read_safetensors(file);
    if (!f.ok()) throw ValueError(std::string(f.status().message()));
    contents[it.key()] = std::move(*f);
  }
  if (!contents.count("model.safetensors")) throw ValueError(str_cat(path, ": no model.safetensors"));
  std::vector<Variable> vars = model_.variables();
  std::vector<Tensor> values = matching_values(str_cat(path, "/model.safetensors"), contents["model.safetensors"], vars);
  optimizers::Optimizer* opt = optimizer_of(model_);
  std::vector<Variable> slots;
  std::vector<Tensor> slot_values;
  if (opt && contents.count("optimizer.safetensors")) {
    opt->build(model_.trainable_variables());
    slots = opt->variables();
    slot_values = matching_values(str_cat(path, "/optimizer.safetensors"), contents["optimizer.safetensors"], slots);
  }
  for (size_t i = 0; i < vars.size(); ++i) vars[i].assign(values[i]);
  for (size_t i = 0; i < slots.size(); ++i) slots[i].assign(slot_values[i]);
  // A data-parallel checkpoint holds every replica's generator: each takes its own.
  ReplicaContext* ctx = current_replica_context();
  const nlohmann::json* rng = meta.contains("rng") ? &meta["rng"] : nullptr;
  if (ctx && meta.contains("rng_replicas") && meta["rng_replicas"].is_array() &&
      static_cast<int>(meta["rng_replicas"].size()) == ctx->num_replicas()) {
    rng = &meta["rng_replicas"][ctx->replica_id()];
  }
  if (rng) global_generator().set_state({rng->value("seed", uint64_t{0}), rng->value("next_stream", uint64_t{0})});
  CheckpointInfo info{path, meta.value("step", int64_t{0}), meta.value("epoch", int64_t{0}), {}};
  if (meta.contains("extra") && meta["extra"].is_object()) info.extra = meta["extra"].get<std::map<std::string, std::string>>();
  return info;
}

std::vector<std::string> CheckpointManager::checkpoints() const {
  std::vector<std::pair<int64_t, std::string>> found;
  for (const fs::directory_entry& e : fs::directory_iterator(dir_)) {
    std::optional<int64_t> step = step_of(e.path().filename().string());
    if (step && e.is_directory() && fs::exists(e.path() / "meta.json")) found.emplace_back(*step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [step, path] : found) out.push_back(path);
  return out;
}

std::optional<CheckpointInfo> CheckpointManager::restore_latest() {
  std::vector<std::string> candidates;
  std::ifstream latest(str_cat(dir_, "/latest"));
  std::string name;
  if (latest >> name) candidates.push_back(str_cat(dir_, "/", name));
  std::vector<std::string> all = checkpoints();
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (std::find(candidates.begin(), candidates.end(), *it) == candidates.end()) candidates.push_back(*it);
  }
  for (const std::string& path : candidates) {
    try {
      return restore(path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gradflow: checkpoint %s is unusable (%s); trying the previous one\n", path.c_str(), e.what());
    }
  }
  return std::nullopt;
}

}  // namespace gradflow
