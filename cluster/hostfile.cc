// OpenMPI hostfile and -H list parsing (see hostfile.h).
#include "cluster/hostfile.h"

#include <fstream>
#include <sstream>

#include "cluster/internal/env_values.h"

namespace gradflow::cluster {
namespace {

absl::Status line_error(std::string_view file_name, int line, std::string_view what) {
  return absl::InvalidArgumentError(std::string(file_name) + ":" + std::to_string(line) + ": " + std::string(what));
}

// Adds entry to hosts, summing slots (and max_slots when both give one) for a host already listed.
void add_host(std::vector<HostSlots>& hosts, HostSlots entry, std::vector<bool>& max_given_everywhere) {
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (hosts[i].host != entry.host) continue;
    hosts[i].slots += entry.slots;
    max_given_everywhere[i] = max_given_everywhere[i] && entry.max_slots.has_value();
    if (max_given_everywhere[i]) {
      hosts[i].max_slots = *hosts[i].max_slots + *entry.max_slots;
    } else {
      hosts[i].max_slots.reset();
    }
    return;
  }
  max_given_everywhere.push_back(entry.max_slots.has_value());
  hosts.push_back(std::move(entry));
}

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  size_t pos = 0;
  while (true) {
    pos = line.find_first_not_of(" \t\r", pos);
    if (pos == std::string_view::npos) break;
    size_t end = line.find_first_of(" \t\r", pos);
    if (end == std::string_view::npos) end = line.size();
    words.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  return words;
}

}  // namespace

absl::StatusOr<std::vector<HostSlots>> parse_hostfile(std::string_view text, std::string_view file_name) {
  std::vector<HostSlots> hosts;
  std::vector<bool> max_given;
  int line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    line = line.substr(0, line.find('#'));
    std::vector<std::string_view> words = split_words(line);
    if (words.empty()) continue;
    HostSlots entry{.host = std::string(words[0])};
    if (entry.host.find('=') != std::string::npos) {
      return line_error(file_name, line_number, "\"" + entry.host + "\" is not a host name");
    }
    for (size_t w = 1; w < words.size(); ++w) {
      std::string_view word = words[w];
      size_t eq = word.find('=');
      std::string_view key = word.substr(0, eq);
      if (eq == std::string_view::npos || (key != "slots" && key != "max_slots" && key != "max-slots")) {
        return line_error(file_name, line_number,
                          "unknown field \"" + std::string(word) + "\" (expected slots=N or max_slots=M)");
      }
      absl::StatusOr<int> value = internal::parse_int(key, word.substr(eq + 1), 1);
      if (!value.ok()) return line_error(file_name, line_number, std::string(value.status().message()));
      if (key == "slots") {
        entry.slots = *value;
      } else {
        entry.max_slots = *value;
      }
    }
    if (entry.max_slots && *entry.max_slots < entry.slots) {
      return line_error(file_name, line_number,
                        "max_slots=" + std::to_string(*entry.max_slots) + " is less than slots=" +
                            std::to_string(entry.slots));
    }
    add_host(hosts, std::move(entry), max_given);
  }
  return hosts;
}

absl::StatusOr<std::vector<HostSlots>> read_hostfile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(path + ": cannot open hostfile");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_hostfile(text.str(), path);
}

absl::StatusOr<std::vector<HostSlots>> parse_host_list(std::string_view list) {
  if (list.empty()) return internal::env_error("-H", list, "empty host list");
  std::vector<HostSlots> hosts;
  std::vector<bool> max_given;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view item = list.substr(start, comma - start);
    start = comma + 1;
    size_t colon = item.rfind(':');
    HostSlots entry{.host = std::string(item.substr(0, colon))};
    if (entry.host.empty() || entry.host.find_first_of(" \t=") != std::string::npos) {
      return internal::env_error("-H", list, "bad host \"" + std::string(item) + "\"");
    }
    if (colon != std::string_view::npos) {
      absl::StatusOr<int> slots = internal::parse_int("-H", item.substr(colon + 1), 1);
      if (!slots.ok()) {
        return internal::env_error("-H", list, "bad slot count in \"" + std::string(item) + "\"");
      }
      entry.slots = *slots;
    }
    add_host(hosts, std::move(entry), max_given);
  }
  return hosts;
}

}  // namespace gradflow::cluster
