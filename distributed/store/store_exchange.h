// exchange_through_store: an all-gather of a few bytes per rank through the job's store, for work that
// must coordinate the ranks beside training's collectives (an async sharded checkpoint's commit on a
// background thread): a collective on the communicator would have to be issued in the same order as
// training's own on every rank, which a background thread cannot promise.
//
//   absl::StatusOr<std::vector<std::string>> all = exchange_through_store(*store, "ckpt7/b2", rank, size, mine, timeout);
//
// Each rank sets "<tag>/<rank>", waits until every rank's key is there, reads them all, and counts itself
// in "<tag>/read"; rank 0 then waits until every rank has read and deletes the keys, so none are left and
// rank 0 (whose process may serve the store) does not return before the others are done with it.
// Waiting polls check() (1 ms growing to 20 ms), never a blocking wait(): a TcpStore serializes its
// calls on one connection, which the communicator's watchdog needs for its heartbeats.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "distributed/store/store.h"

namespace gradflow::distributed {

// Every rank's `mine`, by rank. `tag` names this exchange: the same on every rank, never reused while
// its keys may exist. kDeadlineExceeded naming the tag and the ranks that did not arrive (or did not
// read) within timeout; the store's own error when it fails.
// `cancelled`, when given, is asked on every poll: a non-empty answer (the job failed) ends the wait
// with kAborted carrying it, rather than waiting out the timeout for ranks that will not come.
absl::StatusOr<std::vector<std::string>> exchange_through_store(Store& store, const std::string& tag, int rank,
                                                                int size, const std::string& mine,
                                                                Store::Timeout timeout,
                                                                const std::function<std::string()>& cancelled = {});

}  // namespace gradflow::distributed
