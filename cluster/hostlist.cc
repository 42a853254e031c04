// Slurm hostlist expansion/compression and tasks-per-node parsing (see hostlist.h).
#include "cluster/hostlist.h"

#include <charconv>
#include <optional>

#include "cluster/internal/env_values.h"

namespace gradflow::cluster {
namespace {

using internal::env_error;

// One bracket group expanded: the strings it stands for, in order.
absl::StatusOr<std::vector<std::string>> expand_group(std::string_view group, std::string_view hostlist,
                                                      std::string_view what) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= group.size()) {
    size_t comma = group.find(',', start);
    if (comma == std::string_view::npos) comma = group.size();
    std::string_view range = group.substr(start, comma - start);
    size_t dash = range.find('-');
    std::string_view lo = range.substr(0, dash);
    std::string_view hi = dash == std::string_view::npos ? lo : range.substr(dash + 1);
    auto is_number = [](std::string_view s) {
      return !s.empty() && s.size() <= 18 && s.find_first_not_of("0123456789") == std::string_view::npos;
    };
    if (!is_number(lo) || !is_number(hi)) {
      return env_error(what, hostlist, "bad range \"" + std::string(range) + "\" in brackets");
    }
    long long lo_value = 0, hi_value = 0;
    std::from_chars(lo.data(), lo.data() + lo.size(), lo_value);
    std::from_chars(hi.data(), hi.data() + hi.size(), hi_value);
    if (hi_value < lo_value) {
      return env_error(what, hostlist, "range \"" + std::string(range) + "\" runs backwards");
    }
    if (hi_value - lo_value >= static_cast<long long>(kMaxExpandedHosts)) {
      return env_error(what, hostlist, "range \"" + std::string(range) + "\" is too large");
    }
    for (long long v = lo_value; v <= hi_value; ++v) {
      std::string digits = std::to_string(v);
      if (digits.size() < lo.size()) digits.insert(0, lo.size() - digits.size(), '0');
      out.push_back(std::move(digits));
    }
    start = comma + 1;
  }
  return out;
}

// One top-level item ("rack[1-2]-node[01-02]") expanded and appended to hosts.
absl::Status expand_item(std::string_view item, std::string_view hostlist, std::string_view what,
                         std::vector<std::string>& hosts) {
  if (item.empty()) return env_error(what, hostlist, "empty host name");
  std::vector<std::string> partial = {""};
  size_t pos = 0;
  while (pos < item.size()) {
    size_t open = item.find('[', pos);
    std::string_view text = item.substr(pos, open == std::string_view::npos ? std::string_view::npos : open - pos);
    if (text.find(']') != std::string_view::npos) return env_error(what, hostlist, "unmatched ']'");
    for (std::string& p : partial) p += text;
    if (open == std::string_view::npos) break;
    size_t close = item.find(']', open);
    if (close == std::string_view::npos) return env_error(what, hostlist, "unmatched '['");
    std::string_view group = item.substr(open + 1, close - open - 1);
    if (group.find('[') != std::string_view::npos) return env_error(what, hostlist, "nested '['");
    absl::StatusOr<std::vector<std::string>> values = expand_group(group, hostlist, what);
    if (!values.ok()) return values.status();
    if (partial.size() * values->size() + hosts.size() > kMaxExpandedHosts) {
      return env_error(what, hostlist, "expands to more than " + std::to_string(kMaxExpandedHosts) + " hosts");
    }
    std::vector<std::string> next;
    next.reserve(partial.size() * values->size());
    for (const std::string& p : partial) {
      for (const std::string& v : *values) next.push_back(p + v);
    }
    partial = std::move(next);
    pos = close + 1;
  }
  for (std::string& p : partial) hosts.push_back(std::move(p));
  return absl::OkStatus();
}

// A host name split around its last run of digits: prefix, digits, suffix.
struct NumberedName {
  std::string prefix, suffix;
  std::string digits;
};

std::optional<NumberedName> split_last_number(const std::string& host) {
  size_t end = host.find_last_of("0123456789");
  if (end == std::string::npos) return std::nullopt;
  size_t begin = host.find_last_not_of("0123456789", end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  if (end + 1 - begin > 18) return std::nullopt;
  return NumberedName{host.substr(0, begin), host.substr(end + 1), host.substr(begin, end + 1 - begin)};
}

}  // namespace

absl::StatusOr<std::vector<std::string>> expand_hostlist(std::string_view hostlist, std::string_view what) {
  if (hostlist.empty()) return env_error(what, hostlist, "empty hostlist");
  if (hostlist.find_first_of(" \t\n") != std::string_view::npos) {
    return env_error(what, hostlist, "white space in hostlist");
  }
  std::vector<std::string> hosts;
  size_t start = 0;
  int depth = 0;
  for (size_t i = 0; i <= hostlist.size(); ++i) {
    char c = i < hostlist.size() ? hostlist[i] : ',';
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (depth < 0) return env_error(what, hostlist, "unmatched ']'");
    if (c == ',' && depth == 0) {
      absl::Status status = expand_item(hostlist.substr(start, i - start), hostlist, what, hosts);
      if (!status.ok()) return status;
      start = i + 1;
    }
  }
  if (depth != 0) return env_error(what, hostlist, "unmatched '['");
  return hosts;
}

std::string compress_hostlist(const std::vector<std::string>& hosts) {
  std::string out;
  size_t i = 0;
  while (i < hosts.size()) {
    if (!out.empty()) out += ',';
    std::optional<NumberedName> first = split_last_number(hosts[i]);
    if (!first) {
      out += hosts[i++];
      continue;
    }
    // Collect the following hosts with the same prefix, suffix and digit width.
    std::vector<long long> numbers;
    size_t j = i;
    for (; j < hosts.size(); ++j) {
      std::optional<NumberedName> next = split_last_number(hosts[j]);
      if (!next || next->prefix != first->prefix || next->suffix != first->suffix ||
          next->digits.size() != first->digits.size()) {
        break;
      }
      numbers.push_back(std::stoll(next->digits));
    }
    if (numbers.size() == 1) {
      out += hosts[i++];
      continue;
    }
    size_t width = first->digits.size();
    auto padded = [width](long long v) {
      std::string s = std::to_string(v);
      if (s.size() < width) s.insert(0, width - s.size(), '0');
      return s;
    };
    std::string group;
    for (size_t k = 0; k < numbers.size();) {
      size_t run = k;
      while (run + 1 < numbers.size() && numbers[run + 1] == numbers[run] + 1) ++run;
      if (!group.empty()) group += ',';
      group += padded(numbers[k]);
      if (run > k) group += '-' + padded(numbers[run]);
      k = run + 1;
    }
    out += first->prefix + '[' + group + ']' + first->suffix;
    i = j;
  }
  return out;
}

absl::StatusOr<std::vector<int>> expand_tasks_per_node(std::string_view value, std::string_view what) {
  if (value.empty()) return env_error(what, value, "empty tasks-per-node list");
  std::vector<int> counts;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    std::string_view item = value.substr(start, comma - start);
    std::string_view count_text = item;
    int repeat = 1;
    size_t paren = item.find('(');
    if (paren != std::string_view::npos) {
      if (item.size() < paren + 4 || item.substr(paren, 2) != "(x" || item.back() != ')') {
        return env_error(what, value, "bad item \"" + std::string(item) + "\" (expected N or N(xM))");
      }
      std::string_view repeat_text = item.substr(paren + 2, item.size() - paren - 3);
      absl::StatusOr<int> r = internal::parse_int(what, repeat_text, 1);
      if (!r.ok()) return env_error(what, value, "bad repeat count in \"" + std::string(item) + "\"");
      repeat = *r;
      count_text = item.substr(0, paren);
    }
    absl::StatusOr<int> count = internal::parse_int(what, count_text, 0);
    if (!count.ok()) return env_error(what, value, "bad task count in \"" + std::string(item) + "\"");
    if (counts.size() + repeat > kMaxExpandedHosts) return env_error(what, value, "too many nodes");
    counts.insert(counts.end(), repeat, *count);
    start = comma + 1;
  }
  return counts;
}

}  // namespace gradflow::cluster
