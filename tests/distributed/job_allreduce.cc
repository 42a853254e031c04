// A minimal distributed program for the launcher's multi-host tests: resolves its job from the
// environment, gets the job's communicator (communicator_for_job: store at MASTER_ADDR:MASTER_PORT,
// backend from GRADFLOW_BACKEND or how the job started), all-reduces rank + 1, and checks the sum.
// Prints "job_allreduce rank=R of N backend=B sum=S ok" and exits 0, or exits 1 naming the problem.
#include <cstdio>

#include "cluster/environment.h"
#include "core/gradflow.h"
#include "distributed/comm/job.h"

int main() {
  using namespace gradflow;
  absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job(cluster::current_environment());
  if (!job.ok()) {
    std::fprintf(stderr, "job_allreduce: %s\n", job.status().ToString().c_str());
    return 2;
  }
  try {
    std::unique_ptr<distributed::Communicator> comm =
        distributed::communicator_for_job(*job, {.timeout = std::chrono::seconds(60)});
    double sum = comm->all_reduce({full({4}, job->rank + 1.0)})->result()[0].to_vector<float>()[3];
    double want = job->world_size * (job->world_size + 1) / 2.0;
    std::printf("job_allreduce rank=%d of %d backend=%s sum=%g %s (transport: %s)\n", comm->rank(), comm->size(),
                std::string(distributed::backend_name(comm->backend())).c_str(), sum, sum == want ? "ok" : "WRONG",
                comm->transport().c_str());
    return sum == want ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "job_allreduce: rank %d: %s\n", job->rank, e.what());
    return 1;
  }
}
