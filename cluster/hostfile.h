// OpenMPI hostfiles and `-H` host lists, as mpirun reads them.
//
//   # hosts.txt
//   node1 slots=4 max_slots=8
//   node2            # one slot
//   node1 slots=2    # listed again: node1 now has 6 slots (max_slots 8 only if every line gives one)
//
//   absl::StatusOr<std::vector<HostSlots>> hosts = read_hostfile("hosts.txt");
//   parse_host_list("node1:4,node2")   // {{"node1", 4}, {"node2", 1}}
//
// Keys: `slots=N` (the older `cpu=N` and `count=N` spellings are not accepted), `max_slots=M`
// (also `max-slots=M`). A host without a count has 1 slot. Hosts keep the order of their first appearance;
// a host listed again adds its slots, as mpirun does. Errors are kInvalidArgument naming the file and line
// (or "-H" and the item) and the offending text; read_hostfile's missing file is kNotFound.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace gradflow::cluster {

struct HostSlots {
  std::string host;
  int slots = 1;
  std::optional<int> max_slots;  // absent: no limit given (mpirun's oversubscription rules apply)

  bool operator==(const HostSlots&) const = default;
};

// The hosts in hostfile text; file_name only labels errors ("hosts.txt:3: ...").
absl::StatusOr<std::vector<HostSlots>> parse_hostfile(std::string_view text, std::string_view file_name);

// parse_hostfile on the contents of the file at path.
absl::StatusOr<std::vector<HostSlots>> read_hostfile(const std::string& path);

// mpirun's `-H host[:slots],host2[:slots]` list.
absl::StatusOr<std::vector<HostSlots>> parse_host_list(std::string_view list);

}  // namespace gradflow::cluster
