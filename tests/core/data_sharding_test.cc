// auto_shard's policies (core/data/sharding.h): across the workers every element is read exactly once
// per pass (OFF: once per worker), for uneven file sizes and counts that do not divide; FILE gives each
// worker only its files; AUTO falls back to DATA when FILE cannot apply; the errors name the problem.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "core/data/sharding.h"
#include "core/data/tfrecord_dataset.h"
#include "core/io/tfrecord.h"
#include "core/ops/ops.h"
#include "tests/core/data_test_util.h"

namespace gradflow {
namespace {

using testing::expect_error;

// Files holding `counts[f]` records each, named "rNNN" (unique, equal length, so that they batch).
std::vector<std::string> write_files(const testing::TempDir& dir, const std::vector<int>& counts, std::vector<std::string>* all) {
  std::vector<std::string> files;
  int next = 0;
  for (size_t f = 0; f < counts.size(); ++f) {
    std::vector<std::string> records;
    for (int i = 0; i < counts[f]; ++i) {
      char name[8];
      std::snprintf(name, sizeof name, "r%03d", next++);
      records.push_back(name);
      all->push_back(name);
    }
    files.push_back(dir.file(str_cat("part-", f, ".tfrecord")));
    write_tfrecords(files.back(), records);
  }
  return files;
}

// Every record in every (batched) element of ds, as strings.
std::vector<std::string> records_of(const Dataset& ds) {
  std::vector<std::string> out;
  for (const Element& e : ds) {
    Tensor rows = e[0].rank() == 1 ? e[0].reshape({1, -1}) : e[0];
    for (int64_t r = 0; r < rows.dim(0); ++r) {
      std::vector<uint8_t> bytes = rows.slice(0, r, r + 1).contiguous().to_vector<uint8_t>();
      out.emplace_back(bytes.begin(), bytes.end());
    }
  }
  return out;
}

std::vector<int64_t> values_of(const Dataset& ds) {
  std::vector<int64_t> out;
  for (const Element& e : ds) {
    for (int64_t v : e[0].reshape({-1}).to_vector<int64_t>()) out.push_back(v);
  }
  return out;
}

template <class T>
std::vector<T> sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(AutoShard, FileGivesEachWorkerItsFilesAndEveryRecordOnce) {
  testing::TempDir dir;
  std::vector<std::string> all;
  std::vector<std::string> files = write_files(dir, {3, 1, 4, 2, 5}, &all);
  // A typical pipeline: read, map, shuffle, batch.
  Dataset pipeline = TFRecordDataset(files).map([](Element e) { return e; }).shuffle(4, 7).batch(2);
  for (int64_t n : {2, 3, 5}) {
    std::vector<std::string> seen;
    for (int64_t w = 0; w < n; ++w) {
      Dataset mine = auto_shard(pipeline, n, w, AutoShardPolicy::kFile);
      std::vector<std::string> expected_files;
      for (size_t f = static_cast<size_t>(w); f < files.size(); f += static_cast<size_t>(n)) expected_files.push_back(files[f]);
      EXPECT_EQ(mine.source_files(), expected_files) << n << " workers, worker " << w;
      for (std::string& r : records_of(mine)) seen.push_back(std::move(r));
    }
    EXPECT_EQ(sorted(seen), sorted(all)) << n << " workers";
  }
  // The original pipeline is untouched, and a second pass over a share reshuffles as the original would.
  EXPECT_EQ(sorted(records_of(pipeline)), sorted(all));
  Dataset share = auto_shard(pipeline, 2, 0, AutoShardPolicy::kFile);
  EXPECT_EQ(sorted(records_of(share)), sorted(records_of(share)));
}

TEST(AutoShard, DataGivesEachWorkerEveryNthElement) {
  Dataset batches = Dataset::range(23).batch(4);  // 6 batches, the last one short
  for (int64_t n : {2, 3, 4}) {
    std::vector<int64_t> seen;
    for (int64_t w = 0; w < n; ++w) {
      for (int64_t v : values_of(auto_shard(batches, n, w, AutoShardPolicy::kData))) seen.push_back(v);
    }
    EXPECT_EQ(sorted(seen), values_of(Dataset::range(23))) << n << " workers";
  }
  // kAuto on a dataset without files is DATA.
  EXPECT_EQ(values_of(auto_shard(batches, 3, 1, AutoShardPolicy::kAuto)), values_of(batches.shard(3, 1)));
}

TEST(AutoShard, AutoPrefersFilesAndFallsBackToData) {
  testing::TempDir dir;
  std::vector<std::string> all;
  std::vector<std::string> files = write_files(dir, {4, 3}, &all);
  Dataset ds = TFRecordDataset(files);
  // Enough files: by file.
  EXPECT_EQ(auto_shard(ds, 2, 1, AutoShardPolicy::kAuto).source_files(), (std::vector<std::string>{files[1]}));
  // Fewer files than workers: by element, every record once.
  std::vector<std::string> seen;
  for (int64_t w = 0; w < 3; ++w) {
    Dataset mine = auto_shard(ds, 3, w, AutoShardPolicy::kAuto);
    EXPECT_EQ(mine.source_files(), files);
    for (std::string& r : records_of(mine)) seen.push_back(std::move(r));
  }
  EXPECT_EQ(sorted(seen), sorted(all));
  // A file cache cannot be rebuilt over a share of the files: AUTO shards by element instead.
  Dataset cached = ds.cache(dir.file("records.cache"));
  seen.clear();
  for (int64_t w = 0; w < 2; ++w) {
    for (std::string& r : records_of(auto_shard(cached, 2, w, AutoShardPolicy::kAuto))) seen.push_back(std::move(r));
  }
  EXPECT_EQ(sorted(seen), sorted(all));
}

TEST(AutoShard, OffGivesEveryWorkerEverything) {
  Dataset ds = Dataset::range(10).batch(3);
  for (int64_t w = 0; w < 3; ++w) EXPECT_EQ(values_of(auto_shard(ds, 3, w, AutoShardPolicy::kOff)), values_of(ds));
}

TEST(AutoShard, ErrorsNameTheProblem) {
  testing::TempDir dir;
  std::vector<std::string> all;
  std::vector<std::string> files = write_files(dir, {2, 2}, &all);
  expect_error<ValueError>([&] { auto_shard(TFRecordDataset(files), 3, 0, AutoShardPolicy::kFile); },
                           {"FILE", "2 file(s)", "3 workers", "tfrecord"});
  expect_error<ValueError>([] { auto_shard(Dataset::range(4), 2, 0, AutoShardPolicy::kFile); },
                           {"FILE", "reads no files"});
  expect_error<ValueError>(
      [&] { auto_shard(TFRecordDataset(files).cache(dir.file("c")), 2, 0, AutoShardPolicy::kFile); },
      {"cache", "file cache"});
  expect_error<ValueError>([] { auto_shard(Dataset::range(4), 2, 2); }, {"worker index 2", "2 workers"});
  expect_error<ValueError>([] { auto_shard(Dataset::range(4), 0, 0); }, {"num_workers"});
  EXPECT_EQ(shard_policy_name(AutoShardPolicy::kFile), "FILE");
}

}  // namespace
}  // namespace gradflow
