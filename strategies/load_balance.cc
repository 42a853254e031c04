#include "strategies/load_balance.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/nn/replica_context.h"

namespace gradflow::strategies {
namespace {

constexpr double kSmoothing = 0.3;  // weight of the newest step in the moving average

}  // namespace

std::vector<int64_t> balanced_bounds(int64_t total, const std::vector<double>& speeds) {
  const int64_t n = static_cast<int64_t>(speeds.size());
  if (n == 0) return {0, total};
  const double sum = std::accumulate(speeds.begin(), speeds.end(), 0.0);
  bool usable = std::isfinite(sum) && sum > 0;
  for (double s : speeds) usable = usable && std::isfinite(s) && s > 0;
  if (!usable) return array_split_bounds(total, n);
  std::vector<int64_t> rows(n);
  std::vector<double> fraction(n);
  int64_t given = 0;
  for (int64_t r = 0; r < n; ++r) {
    const double share = static_cast<double>(total) * speeds[r] / sum;
    rows[r] = static_cast<int64_t>(std::floor(share));
    fraction[r] = share - static_cast<double>(rows[r]);
    given += rows[r];
  }
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return fraction[a] > fraction[b]; });
  for (int64_t k = 0; given < total; k = (k + 1) % n, ++given) ++rows[order[k]];
  if (total >= n) {
    for (int64_t r = 0; r < n; ++r) {
      while (rows[r] == 0) {
        const int64_t donor = std::max_element(rows.begin(), rows.end()) - rows.begin();  // the first largest
        --rows[donor];
        ++rows[r];
      }
    }
  }
  std::vector<int64_t> bounds(static_cast<size_t>(n) + 1, 0);
  for (int64_t r = 0; r < n; ++r) bounds[r + 1] = bounds[r] + rows[r];
  return bounds;
}

std::vector<double> updated_speeds(const std::vector<double>& speeds, const std::vector<int64_t>& rows,
                                   const std::vector<double>& seconds) {
  std::vector<double> out(rows.size(), 0.0);
  for (size_t r = 0; r < rows.size(); ++r) {
    const double old = r < speeds.size() ? speeds[r] : 0.0;
    if (rows[r] <= 0 || r >= seconds.size() || !(seconds[r] > 0)) {
      out[r] = old;
      continue;
    }
    const double now = static_cast<double>(rows[r]) / seconds[r];
    out[r] = old > 0 ? (1 - kSmoothing) * old + kSmoothing * now : now;
  }
  return out;
}

}  // namespace gradflow::strategies
