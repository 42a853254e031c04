// For safetensors_interop.py: `write_safetensors PATH` writes known tensors; `write_safetensors --check
// PATH` reads the file the Python package wrote and checks it. Exits non-zero with a message otherwise.
#include <cstdio>
#include <cstring>

#include "core/gradflow.h"
#include "core/io/safetensors.h"

using namespace gradflow;

int main(int argc, char** argv) {
  if (argc == 2) {
    absl::Status s = write_safetensors(
        argv[1], {{"dense/kernel", arange(0, 12, 1, kF32).reshape({3, 4}) / 4.0},
                  {"dense/bias", from_vector<double>({0.5, -1.5})},
                  {"steps", from_vector<int64_t>({7, 8, 9})},
                  {"half", from_vector<float>({1.5, -2.0}).to(kF16)},
                  {"mask", from_vector<float>({1, 0, 1}).to(kBool)},
                  {"bytes", from_vector<uint8_t>({0, 255})}});
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    return 0;
  }
  if (argc == 3 && std::strcmp(argv[1], "--check") == 0) {
    absl::StatusOr<SafetensorsFile> f = read_safetensors(argv[2]);
    if (!f.ok()) {
      std::fprintf(stderr, "%s\n", f.status().ToString().c_str());
      return 1;
    }
    bool ok = f->metadata.at("writer") == "python" && f->tensors.at("w").shape() == Shape{2, 3} &&
              f->tensors.at("w").to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5} &&
              f->tensors.at("n").dtype() == kI32 && f->tensors.at("n").to_vector<int32_t>() == std::vector<int32_t>{3};
    if (!ok) std::fprintf(stderr, "the file Python wrote did not read back as written\n");
    return ok ? 0 : 1;
  }
  std::fprintf(stderr, "usage: write_safetensors PATH | --check PATH\n");
  return 2;
}
