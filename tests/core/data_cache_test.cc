// core/data caches and file sources: cache() and cache(filename) read their recording on later passes, a
// partial first pass never leaves a file that reads as complete, damaged files are errors; TFRecordDataset.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>

#include "core/data/dataset.h"
#include "core/data/tfrecord_dataset.h"
#include "core/io/tfrecord.h"
#include "core/ops/ops.h"
#include "tests/core/data_test_util.h"

namespace gradflow {
namespace {

using testing::drain;
using testing::expect_error;
using testing::ints;
using testing::iota;
using testing::keys;

// range(n) through a generator that counts how many passes asked it for elements.
Dataset counted_range(int64_t n, std::shared_ptr<std::atomic<int>> passes) {
  return Dataset::from_generator([n, passes] {
    ++*passes;
    return [n, i = int64_t{0}]() mutable -> std::optional<Element> {
      if (i == n) return std::nullopt;
      return Element{from_vector<int64_t>({i++}, Shape{})};
    };
  });
}

TEST(DataCache, MemoryCacheReadsLaterPassesFromMemory) {
  auto passes = std::make_shared<std::atomic<int>>(0);
  Dataset ds = counted_range(6, passes).cache();
  EXPECT_EQ(ints(ds.take(3)), iota(0, 3));  // a partial pass records nothing
  EXPECT_EQ(ints(ds), iota(0, 6));
  EXPECT_EQ(passes->load(), 2);
  EXPECT_EQ(ints(ds), iota(0, 6));
  EXPECT_EQ(ints(ds.repeat(3)).size(), 18u);
  EXPECT_EQ(passes->load(), 2);
}

// A shuffle below the cache is frozen by it: every pass repeats the recorded order.
TEST(DataCache, CacheFreezesTheRecordedPass) {
  Dataset ds = Dataset::range(40).shuffle(40, 3).cache();
  std::vector<int64_t> first = ints(ds);
  EXPECT_EQ(ints(ds), first);
  Dataset plain = Dataset::range(40).shuffle(40, 3);
  EXPECT_NE(ints(plain), ints(plain));
}

TEST(DataCache, FileCacheWritesOnceThenReads) {
  testing::TempDir dir;
  std::string path = dir.file("elements.cache");
  auto passes = std::make_shared<std::atomic<int>>(0);
  auto build = [&] {
    return counted_range(10, passes).map([](Element e) { return Element{e[0], e[0].to(kF32) * 0.5}; }).cache(path);
  };
  std::vector<std::string> expected = keys(build());
  EXPECT_EQ(expected.size(), 10u);
  EXPECT_EQ(expected[3], "i64[]{3}|f32[]{1.5}");
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(dir.list(), std::vector<std::string>{"elements.cache"});  // no temporary left behind
  // A new pipeline (a later process) reads the file and never runs the generator.
  EXPECT_EQ(keys(build()), expected);
  EXPECT_EQ(keys(build().repeat(2)).size(), 20u);
  EXPECT_EQ(passes->load(), 1);
}

TEST(DataCache, PartialFirstPassLeavesNoFile) {
  testing::TempDir dir;
  std::string path = dir.file("partial.cache");
  Dataset ds = Dataset::range(100).cache(path);
  {
    Iterator it = ds.make_iterator();
    EXPECT_EQ(drain(it, 30).size(), 30u);
    EXPECT_EQ(dir.list().size(), 1u);  // the temporary being written
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  EXPECT_TRUE(dir.list().empty());
  EXPECT_EQ(ints(ds.take(99)), iota(0, 99));  // take stops before the end: still no file
  EXPECT_TRUE(dir.list().empty());
  // A job killed mid-pass leaves its temporary behind; that never reads as the cache.
  std::ofstream(path + ".tmp-1-2-3") << "half a cache";
  EXPECT_EQ(ints(ds), iota(0, 100));
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(ints(Dataset::range(5).cache(path)), iota(0, 100));  // the file wins over the input, as in TF
}

TEST(DataCache, TruncatedOrCorruptFileIsAnError) {
  testing::TempDir dir;
  std::string path = dir.file("damaged.cache");
  Dataset ds = Dataset::range(50).map([](Element e) { return Element{e[0], zeros({4})}; }).cache(path);
  keys(ds);
  auto size = std::filesystem::file_size(path);

  std::filesystem::resize_file(path, size - 20);  // the end marker and part of the last record gone
  Iterator it = ds.make_iterator();
  expect_error<Error>([&] { drain(it); }, {path, "truncated"});
  expect_error<Error>([&] { it.next(); }, {path, "truncated"});  // and stays failed

  keys(Dataset::range(50).map([](Element e) { return Element{e[0], zeros({4})}; }).cache(dir.file("fresh.cache")));
  std::filesystem::rename(dir.file("fresh.cache"), path);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.put('\x7f');
  }
  expect_error<Error>([&] { keys(ds); }, {path});

  std::ofstream(path, std::ios::trunc) << "not a cache at all";
  expect_error<Error>([&] { keys(ds); }, {path, "not a gradflow cache file"});
}

TEST(DataCache, UnwritableCachePathIsAnError) {
  expect_error<Error>([] { Dataset::range(3).cache("/nonexistent-dir/x.cache").make_iterator(); },
                      {"/nonexistent-dir/x.cache"});
  expect_error<ValueError>([] { Dataset::range(3).cache(""); }, {"cache"});
}

std::vector<std::string> write_records(const std::string& path, int first, int count) {
  std::vector<std::string> records;
  for (int i = first; i < first + count; ++i) records.push_back(std::string(static_cast<size_t>(i % 4), 'a' + i % 26));
  write_tfrecords(path, records);
  return records;
}

std::string as_string(const Element& e) {
  std::vector<uint8_t> bytes = e[0].to_vector<uint8_t>();
  return std::string(bytes.begin(), bytes.end());
}

TEST(DataTFRecord, RecordsAsU8Tensors) {
  testing::TempDir dir;
  std::vector<std::string> a = write_records(dir.file("a.tfrecord"), 0, 5);
  std::vector<std::string> b = write_records(dir.file("b.tfrecord"), 5, 7);
  TFRecordDataset ds({dir.file("a.tfrecord"), dir.file("b.tfrecord")});
  std::vector<std::string> got;
  for (const Element& e : ds) {
    EXPECT_EQ(e[0].dtype(), kU8);
    EXPECT_EQ(e[0].rank(), 1);
    got.push_back(as_string(e));
  }
  a.insert(a.end(), b.begin(), b.end());
  EXPECT_EQ(got, a);
  EXPECT_EQ(ds.map([](Element e) { return e; }).source_files(),
            (std::vector<std::string>{dir.file("a.tfrecord"), dir.file("b.tfrecord")}));
  EXPECT_TRUE(Dataset::range(3).source_files().empty());
}

TEST(DataTFRecord, ResumesAtTheSavedRecord) {
  testing::TempDir dir;
  write_records(dir.file("a.tfrecord"), 0, 4);
  write_records(dir.file("b.tfrecord"), 4, 6);
  std::vector<std::string> full;
  for (const Element& e : TFRecordDataset({dir.file("a.tfrecord"), dir.file("b.tfrecord")})) full.push_back(as_string(e));
  for (int64_t k : {0, 1, 3, 4, 7, 10}) {
    Iterator it = TFRecordDataset({dir.file("a.tfrecord"), dir.file("b.tfrecord")}).make_iterator();
    for (int64_t i = 0; i < k; ++i) it.next();
    Iterator resumed = TFRecordDataset({dir.file("a.tfrecord"), dir.file("b.tfrecord")}).make_iterator(it.save());
    std::vector<std::string> rest;
    while (std::optional<Element> e = resumed.next()) rest.push_back(as_string(*e));
    EXPECT_EQ(rest, std::vector<std::string>(full.begin() + k, full.end())) << "k = " << k;
  }
  // Records differ in length: padded_batch, not batch.
  EXPECT_EQ(keys(TFRecordDataset({dir.file("a.tfrecord"), dir.file("b.tfrecord")}).padded_batch(3, {}, {}, true)).size(),
            3u);
}

TEST(DataTFRecord, MissingFileIsAnErrorNamingIt) {
  testing::TempDir dir;
  TFRecordDataset ds({dir.file("missing.tfrecord")});
  expect_error<Error>([&] { ds.make_iterator().next(); }, {"missing.tfrecord"});
}

}  // namespace
}  // namespace gradflow
