#include "core/io/summary_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "core/io/proto/event.pb.h"
#include "core/io/proto/graph.pb.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace {

double now_secs() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::string serialize(const proto::Event& event) {
  std::string out;
  event.SerializeToString(&out);
  return out;
}

// Creates logdir and a new event file in it, and writes the file_version record.
absl::StatusOr<std::pair<std::string, TFRecordWriter>> create_event_file(const std::string& logdir,
                                                                         const SummaryWriterOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(logdir, ec);
  if (ec) {
    std::string message = str_cat(logdir, ": cannot create the log directory (", ec.message(), ")");
    return ec == std::errc::permission_denied ? absl::PermissionDeniedError(message) : absl::InternalError(message);
  }
  double now = now_secs();
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%010lld", static_cast<long long>(now));
  std::string base = str_cat((std::filesystem::path(logdir) / "events.out.tfevents.").string(), stamp, ".", hostname(),
                             options.filename_suffix);
  std::string path = base;
  for (int n = 1; std::filesystem::exists(path, ec); ++n) path = str_cat(base, ".", n);  // never overwrite a run

  absl::StatusOr<TFRecordWriter> writer = TFRecordWriter::open(path);
  if (!writer.ok()) return writer.status();
  proto::Event event;
  event.set_wall_time(now);
  event.set_file_version("brain.Event:2");
  absl::Status s = writer->write(serialize(event));
  if (s.ok()) s = writer->flush();  // TensorBoard sees the run at once
  if (!s.ok()) return s;
  return std::make_pair(std::move(path), std::move(*writer));
}

proto::Event summary_event(int64_t step) {
  proto::Event event;
  event.set_wall_time(now_secs());
  event.set_step(step);
  return event;
}

// Fills a HistogramProto as TensorFlow's Histogram::EncodeToProto does (empty runs of buckets merged).
void encode_histogram(const std::vector<double>& values, proto::HistogramProto* out) {
  const std::vector<double>& limits = default_histogram_buckets();
  std::vector<double> counts(limits.size(), 0.0);
  double lo = DBL_MAX, hi = -DBL_MAX, sum = 0, sum_squares = 0;
  for (double v : values) {
    counts[std::upper_bound(limits.begin(), limits.end(), v) - limits.begin()] += 1;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    sum += v;
    sum_squares += v * v;
  }
  out->set_min(lo);
  out->set_max(hi);
  out->set_num(static_cast<double>(values.size()));
  out->set_sum(sum);
  out->set_sum_squares(sum_squares);
  for (size_t i = 0; i < counts.size();) {
    double end = limits[i];
    double count = counts[i];
    ++i;
    if (count <= 0) {
      while (i < counts.size() && counts[i] <= 0) end = limits[i++];
    }
    out->add_bucket_limit(end);
    out->add_bucket(count);
  }
}

}  // namespace

const std::vector<double>& default_histogram_buckets() {
  static const std::vector<double> limits = [] {
    std::vector<double> pos;
    for (double v = 1e-12; v < 1e20; v *= 1.1) pos.push_back(v);
    pos.push_back(DBL_MAX);
    std::vector<double> all;
    for (auto it = pos.rbegin(); it != pos.rend(); ++it) all.push_back(-*it);
    all.push_back(0.0);
    all.insert(all.end(), pos.begin(), pos.end());
    return all;
  }();
  return limits;
}

SummaryWriter::SummaryWriter(std::string path, TFRecordWriter writer, SummaryWriterOptions options)
    : path_(std::move(path)),
      writer_(std::make_unique<TFRecordWriter>(std::move(writer))),
      options_(std::move(options)),
      last_flush_(now_secs()) {}

absl::StatusOr<std::unique_ptr<SummaryWriter>> SummaryWriter::open(const std::string& logdir,
                                                                   SummaryWriterOptions options) {
  absl::StatusOr<std::pair<std::string, TFRecordWriter>> file = create_event_file(logdir, options);
  if (!file.ok()) return file.status();
  return std::unique_ptr<SummaryWriter>(
      new SummaryWriter(std::move(file->first), std::move(file->second), std::move(options)));
}

SummaryWriter::SummaryWriter(const std::string& logdir, SummaryWriterOptions options)
    : options_(std::move(options)), last_flush_(now_secs()) {
  absl::StatusOr<std::pair<std::string, TFRecordWriter>> file = create_event_file(logdir, options_);
  throw_if_error(file.status());
  path_ = std::move(file->first);
  writer_ = std::make_unique<TFRecordWriter>(std::move(file->second));
}

SummaryWriter::~SummaryWriter() {
  std::lock_guard<std::mutex> lock(mu_);
  if (writer_) writer_->close().IgnoreError();
}

void SummaryWriter::write_event(const std::string& serialized_event) {
  std::lock_guard<std::mutex> lock(mu_);
  throw_if_error(writer_->write(serialized_event));
  double now = now_secs();
  if (now - last_flush_ >= options_.flush_secs) {
    throw_if_error(writer_->flush());
    last_flush_ = now;
  }
}

void SummaryWriter::flush() {
  std::lock_guard<std::mutex> lock(mu_);
  throw_if_error(writer_->flush());
  last_flush_ = now_secs();
}

void SummaryWriter::scalar(std::string_view tag, double value, int64_t step) {
  proto::Event event = summary_event(step);
  proto::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(std::string(tag));
  v->set_simple_value(static_cast<float>(value));
  write_event(serialize(event));
}

void SummaryWriter::histogram(std::string_view tag, const Tensor& values, int64_t step) {
  GF_CHECK(values.defined(), ValueError, "histogram '", tag, "': the tensor is undefined");
  std::vector<double> data = values.to_vector<double>();
  int64_t bad = std::count_if(data.begin(), data.end(), [](double v) { return !std::isfinite(v); });
  GF_CHECK(bad == 0, ValueError, "histogram '", tag, "': ", bad, " of ", data.size(), " values are NaN or infinite");
  proto::Event event = summary_event(step);
  proto::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(std::string(tag));
  encode_histogram(data, v->mutable_histo());
  write_event(serialize(event));
}

void SummaryWriter::text(std::string_view tag, std::string_view text, int64_t step) {
  proto::Event event = summary_event(step);
  proto::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(std::string(tag));
  // As tensorboard/plugins/text/metadata.py: plugin "text", content an empty TextPluginData (version 0).
  proto::SummaryMetadata* meta = v->mutable_metadata();
  meta->mutable_plugin_data()->set_plugin_name("text");
  meta->set_data_class(proto::DATA_CLASS_TENSOR);
  proto::TensorProto* t = v->mutable_tensor();
  t->set_dtype(proto::DT_STRING);
  t->mutable_tensor_shape();  // a scalar: no dims
  t->add_string_val(std::string(text));
  write_event(serialize(event));
}

void SummaryWriter::graph(const std::string& graph_def_bytes) {
  proto::Event event = summary_event(0);
  event.set_graph_def(graph_def_bytes);
  write_event(serialize(event));
}

void SummaryWriter::layer_graph(const std::vector<GraphNode>& nodes) {
  proto::GraphDef graph_def;
  for (const GraphNode& node : nodes) {
    GF_CHECK(!node.name.empty(), ValueError, "layer_graph: a node has an empty name (op '", node.op, "')");
    proto::NodeDef* def = graph_def.add_node();
    def->set_name(node.name);
    def->set_op(node.op);
    for (const std::string& input : node.inputs) def->add_input(input);
    for (const auto& [key, value] : node.attrs) (*def->mutable_attr())[key].set_s(value);
  }
  graph(graph_def.SerializeAsString());
}

}  // namespace gradflow
