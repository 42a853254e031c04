// TFRecord framing: round trips (plain and GZIP), the exact bytes of a record, and corruption of every
// part of a record (flipped bytes, truncation, lying lengths), each an error naming file and offset.
#include "core/io/tfrecord.h"

#include <gtest/gtest.h>

#include <fstream>
#include <limits>

#include "core/io/crc32c.h"
#include "core/tensor/error.h"
#include "tests/core/io/io_test_util.h"

namespace gradflow {
namespace {

using testing_io::has_error;
using testing_io::read_file;
using testing_io::ScratchDir;
using testing_io::write_file;

std::vector<std::string> sample_records() {
  std::string big(3 << 20, '\0');  // spans several reads
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  return {"first", "", std::string("bin\0ary\xff", 8), big, "last"};
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string le32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
// A record header with a valid crc for any length.
std::string header(uint64_t length) { return le64(length) + le32(crc32c::mask(crc32c::value(le64(length)))); }

TEST(TFRecord, RoundTripPlainAndGzip) {
  ScratchDir dir("tfrecord_roundtrip");
  for (Compression c : {Compression::kNone, Compression::kGzip}) {
    std::string path = dir.file(c == Compression::kGzip ? "r.tfrecord.gz" : "r.tfrecord");
    ASSERT_TRUE(save_tfrecords(path, sample_records(), {.compression = c}).ok());
    absl::StatusOr<std::vector<std::string>> back = load_tfrecords(path, {.compression = c});
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, sample_records());
  }
  std::string gz = read_file(dir.file("r.tfrecord.gz"));
  ASSERT_GE(gz.size(), 2u);
  EXPECT_EQ(gz.substr(0, 2), "\x1f\x8b");  // a gzip stream, as TF's compression_type="GZIP" writes
  EXPECT_LT(gz.size(), read_file(dir.file("r.tfrecord")).size());
}

TEST(TFRecord, ExactLayoutOfARecord) {
  ScratchDir dir("tfrecord_layout");
  std::string path = dir.file("one.tfrecord");
  ASSERT_TRUE(save_tfrecords(path, {"hello"}).ok());
  std::string expected = header(5) + "hello" + le32(crc32c::mask(crc32c::value("hello")));
  EXPECT_EQ(read_file(path), expected);
}

TEST(TFRecord, OffsetsAndSeekResume) {
  ScratchDir dir("tfrecord_seek");
  for (Compression c : {Compression::kNone, Compression::kGzip}) {
    std::string path = dir.file("s.tfrecord");
    std::vector<std::string> records = sample_records();
    absl::StatusOr<TFRecordWriter> w = TFRecordWriter::open(path, {.compression = c});
    ASSERT_TRUE(w.ok()) << w.status();
    std::vector<uint64_t> offsets;
    for (const std::string& r : records) {
      offsets.push_back(w->offset());
      ASSERT_TRUE(w->write(r).ok());
    }
    ASSERT_TRUE(w->close().ok());

    absl::StatusOr<TFRecordReader> r = TFRecordReader::open(path, {.compression = c});
    ASSERT_TRUE(r.ok()) << r.status();
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(r->offset(), offsets[i]);
      ASSERT_TRUE(r->read_next().ok());
    }
    uint64_t saved = r->offset();  // a dataset iterator's checkpoint
    EXPECT_EQ(saved, offsets[2]);
    absl::StatusOr<TFRecordReader> resumed = TFRecordReader::open(path, {.compression = c});
    ASSERT_TRUE(resumed->seek(saved).ok());
    for (size_t i = 2; i < records.size(); ++i) {
      absl::StatusOr<std::optional<std::string>> rec = resumed->read_next();
      ASSERT_TRUE(rec.ok() && rec->has_value()) << rec.status();
      EXPECT_EQ(**rec, records[i]);
    }
    absl::StatusOr<std::optional<std::string>> end = resumed->read_next();
    ASSERT_TRUE(end.ok());
    EXPECT_FALSE(end->has_value());
    ASSERT_TRUE(resumed->seek(offsets[1]).ok());  // backwards
    EXPECT_EQ(resumed->read_next()->value(), records[1]);
  }
}

TEST(TFRecord, FlippedBytesAreDataLossNamingFileAndOffset) {
  ScratchDir dir("tfrecord_flip");
  std::string path = dir.file("f.tfrecord");
  std::vector<std::string> records = {"alpha", "bravo-bravo", "charlie"};
  ASSERT_TRUE(save_tfrecords(path, records).ok());
  const std::string good = read_file(path);
  const uint64_t second = 16 + records[0].size();  // byte offset of record 1
  const uint64_t third = second + 16 + records[1].size();

  struct Case {
    uint64_t byte;
    std::string what;
  };
  for (const Case& c : {Case{second + 2, "length field fails its crc32c check"},
                        Case{second + 9, "length field fails its crc32c check"},
                        Case{second + 12 + 3, "data (11 bytes) fails its crc32c check"},
                        Case{third - 1, "data (11 bytes) fails its crc32c check"}}) {
    std::string bad = good;
    bad[c.byte] = static_cast<char>(bad[c.byte] ^ 0x20);
    write_file(path, bad);
    absl::StatusOr<TFRecordReader> r = TFRecordReader::open(path);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->read_next()->value(), "alpha");
    absl::StatusOr<std::optional<std::string>> rec = r->read_next();
    EXPECT_TRUE(has_error(rec.status(), absl::StatusCode::kDataLoss,
                          {path, "record at byte offset " + std::to_string(second), c.what}))
        << "flipped byte " << c.byte;
    EXPECT_EQ(r->offset(), second);  // still names the bad record, and says so again
    EXPECT_TRUE(has_error(r->read_next().status(), absl::StatusCode::kDataLoss, {c.what}));
    ASSERT_TRUE(r->seek(third).ok());  // skip it
    EXPECT_EQ(r->read_next()->value(), "charlie");
  }
  EXPECT_THROW(read_tfrecords(path), Error);  // the throwing wrapper
}

TEST(TFRecord, TruncatedRecordsAreDataLoss) {
  ScratchDir dir("tfrecord_trunc");
  std::string path = dir.file("t.tfrecord");
  ASSERT_TRUE(save_tfrecords(path, {"alpha", "bravo-bravo"}).ok());
  const std::string good = read_file(path);
  const size_t second = 21;
  struct Case {
    size_t keep;
    std::string what;
  };
  for (const Case& c : {Case{second + 5, "truncated header (5 of 12 bytes)"},
                        Case{second + 12 + 4, "truncated data (4 of 11 bytes before end of file)"},
                        Case{good.size() - 1, "truncated data crc (3 of 4 bytes)"}}) {
    write_file(path, good.substr(0, c.keep));
    absl::StatusOr<std::vector<std::string>> got = load_tfrecords(path);
    EXPECT_TRUE(has_error(got.status(), absl::StatusCode::kDataLoss, {path, "byte offset 21", c.what}));
  }
  write_file(path, good.substr(0, second));  // cut exactly between records: a clean end
  EXPECT_EQ(load_tfrecords(path).value(), std::vector<std::string>{"alpha"});
}

TEST(TFRecord, HugeLengthIsRefusedBeforeAllocating) {
  ScratchDir dir("tfrecord_huge");
  std::string path = dir.file("h.tfrecord");
  write_file(path, header(uint64_t{1} << 62) + "tiny");
  // Over the default 256 MiB limit: refused from the header alone.
  EXPECT_TRUE(has_error(load_tfrecords(path).status(), absl::StatusCode::kResourceExhausted,
                        {path, "byte offset 0", "length 4611686018427387904 exceeds the reader's limit of 268435456"}));
  // With no limit, the reader still only allocates for bytes that exist (4 EiB would throw bad_alloc).
  TFRecordReaderOptions unlimited{.max_record_bytes = std::numeric_limits<uint64_t>::max()};
  EXPECT_TRUE(has_error(load_tfrecords(path, unlimited).status(), absl::StatusCode::kDataLoss,
                        {"truncated data (4 of 4611686018427387904 bytes"}));
  // A corrupt (rather than lying) length fails its crc first.
  std::string bad = header(5);
  bad[7] = '\x40';
  write_file(path, bad + "hello");
  EXPECT_TRUE(has_error(load_tfrecords(path).status(), absl::StatusCode::kDataLoss, {"length field fails"}));
}

TEST(TFRecord, LimitIsConfigurable) {
  ScratchDir dir("tfrecord_limit");
  std::string path = dir.file("l.tfrecord");
  ASSERT_TRUE(save_tfrecords(path, {std::string(1000, 'x')}).ok());
  EXPECT_TRUE(has_error(load_tfrecords(path, {.max_record_bytes = 999}).status(), absl::StatusCode::kResourceExhausted,
                        {"length 1000 exceeds the reader's limit of 999 bytes"}));
  EXPECT_TRUE(load_tfrecords(path, {.max_record_bytes = 1000}).ok());
}

TEST(TFRecord, CompressionMismatchAndCorruptGzip) {
  ScratchDir dir("tfrecord_gzip");
  std::string plain = dir.file("p.tfrecord"), gz = dir.file("g.tfrecord.gz");
  ASSERT_TRUE(save_tfrecords(plain, {"alpha", "bravo"}).ok());
  ASSERT_TRUE(save_tfrecords(gz, {std::string(5000, 'a'), "bravo"}, {.compression = Compression::kGzip}).ok());
  EXPECT_TRUE(has_error(TFRecordReader::open(plain, {.compression = Compression::kGzip}).status(),
                        absl::StatusCode::kDataLoss, {plain, "not a gzip file"}));
  EXPECT_TRUE(has_error(load_tfrecords(gz).status(), absl::StatusCode::kDataLoss, {gz, "byte offset 0"}));
  std::string bytes = read_file(gz);
  write_file(gz, bytes.substr(0, bytes.size() - 12));  // cut into the compressed stream
  EXPECT_TRUE(
      has_error(load_tfrecords(gz, {.compression = Compression::kGzip}).status(), absl::StatusCode::kDataLoss, {gz}));
}

TEST(TFRecord, FollowsAGrowingFile) {
  ScratchDir dir("tfrecord_follow");
  std::string path = dir.file("g.tfrecord");
  absl::StatusOr<TFRecordWriter> w = TFRecordWriter::open(path);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->write("one").ok());
  ASSERT_TRUE(w->flush().ok());
  absl::StatusOr<TFRecordReader> r = TFRecordReader::open(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->read_next()->value(), "one");
  EXPECT_FALSE(r->read_next()->has_value());  // end of file for now
  ASSERT_TRUE(w->write("two").ok());
  ASSERT_TRUE(w->flush().ok());
  EXPECT_EQ(r->read_next()->value(), "two");  // appended since

  std::string three = header(5) + "three" + le32(crc32c::mask(crc32c::value("three")));
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << three.substr(0, 10);  // a writer caught mid-record
  }
  EXPECT_TRUE(has_error(r->read_next().status(), absl::StatusCode::kDataLoss, {"truncated header (10 of 12 bytes)"}));
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << three.substr(10);
  }
  EXPECT_EQ(r->read_next()->value(), "three");  // the retry reads the whole record
}

TEST(TFRecord, OpenErrorsAndWriterLifecycle) {
  ScratchDir dir("tfrecord_open");
  EXPECT_TRUE(has_error(TFRecordReader::open(dir.file("missing.tfrecord")).status(), absl::StatusCode::kNotFound,
                        {dir.file("missing.tfrecord"), "cannot open"}));
  EXPECT_TRUE(has_error(TFRecordWriter::open(dir.file("no/such/dir.tfrecord")).status(), absl::StatusCode::kNotFound,
                        {"no/such/dir.tfrecord"}));
  std::string path = dir.file("w.tfrecord");
  absl::StatusOr<TFRecordWriter> w = TFRecordWriter::open(path);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->write("visible").ok());
  ASSERT_TRUE(w->flush().ok());
  EXPECT_EQ(load_tfrecords(path).value(), std::vector<std::string>{"visible"});  // before close
  ASSERT_TRUE(w->close().ok());
  EXPECT_TRUE(w->close().ok());
  EXPECT_EQ(w->write("late").code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace gradflow
