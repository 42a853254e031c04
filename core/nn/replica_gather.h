// Every replica's bytes on every replica, through ReplicaContext::sum alone (core/ has no all_gather).
//
//   std::vector<std::string> all = all_gather_bytes(ctx, iterator.save().bytes());   // all[r]: replica r's
//
// BackupAndRestore uses it to put each replica's data-iterator position into the checkpoint that rank 0
// commits. Meant for small payloads (a few KiB): the sum carries n x the total size.
#pragma once

#include <string>
#include <vector>

namespace gradflow {

class ReplicaContext;

// Collective: every replica calls it, in the same order. Returns the replicas' bytes by replica id.
std::vector<std::string> all_gather_bytes(ReplicaContext& ctx, const std::string& mine);

}  // namespace gradflow
