// TensorBoard event files: scalars, histograms, text and a graph, written as TensorFlow's
// tf.summary.create_file_writer does, for `tensorboard --logdir DIR`.
//
//   SummaryWriter writer("logs/run1");             // creates logs/run1/events.out.tfevents.<secs>.<host>
//   writer.scalar("loss", 0.31, step);
//   writer.histogram("dense_1/kernel", kernel, step);
//   writer.text("config", "lr=0.001, batch=32", 0);
//   writer.flush();                                 // also on destruction, and on a write once flush_secs passed
//
// The file is TFRecord-framed Event protos (core/io/proto/event.proto); the first record is an Event with
// file_version "brain.Event:2". There is no background thread: writes happen on the caller's thread, and
// the methods may be called from several threads (a mutex serialises them).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/io/tfrecord.h"
#include "core/tensor/tensor.h"

namespace gradflow {

struct SummaryWriterOptions {
  // Appended to the file name, e.g. ".rank1" so that ranks sharing a logdir write separate files.
  std::string filename_suffix;
  // A write flushes when this many seconds have passed since the last flush (TF's flush_millis idea).
  double flush_secs = 120;
};

// A node of the graph that layer_graph() draws.
struct GraphNode {
  std::string name;                          // "dense_1/MatMul": "/" groups nodes into collapsible scopes
  std::string op;                            // "Dense", "MatMul", "InputLayer", ...
  std::vector<std::string> inputs;           // names of the nodes feeding this one
  std::map<std::string, std::string> attrs;  // shown on the node's card ("units": "128")
};

class SummaryWriter {
 public:
  // Creates logdir if needed and a new event file in it; kPermissionDenied / kInternal when it cannot.
  static absl::StatusOr<std::unique_ptr<SummaryWriter>> open(const std::string& logdir,
                                                             SummaryWriterOptions options = {});
  // open() that throws gradflow::Error.
  explicit SummaryWriter(const std::string& logdir, SummaryWriterOptions options = {});
  SummaryWriter(const SummaryWriter&) = delete;
  SummaryWriter& operator=(const SummaryWriter&) = delete;
  ~SummaryWriter();  // flushes and closes (errors at that point are lost: call flush() to see them)

  // Each method appends one Event and throws gradflow::Error when the file cannot be written.
  // A scalar (Summary.Value.simple_value), shown in the Scalars tab.
  void scalar(std::string_view tag, double value, int64_t step);
  // A HistogramProto of all values (any dtype, any device) over TensorFlow's default bucket limits
  // (+-1e-12 growing by 10% to +-1e20, plus 0 and +-DBL_MAX; empty runs of buckets merged as TF does).
  // ValueError when a value is NaN or infinite, as TensorFlow's histogram summary.
  void histogram(std::string_view tag, const Tensor& values, int64_t step);
  // A string tensor summary for the Text tab (plugin "text"); Markdown is rendered.
  void text(std::string_view tag, std::string_view text, int64_t step);
  // A serialized GraphDef, for the Graphs tab.
  void graph(const std::string& graph_def_bytes);
  // A GraphDef built from nodes (op, inputs and attrs as strings), for a model's layer structure.
  void layer_graph(const std::vector<GraphNode>& nodes);
  // Hands everything written to the operating system, so TensorBoard sees it.
  void flush();

  // The event file's path.
  const std::string& path() const { return path_; }

 private:
  SummaryWriter(std::string path, TFRecordWriter writer, SummaryWriterOptions options);
  void write_event(const std::string& serialized_event);

  std::mutex mu_;
  std::string path_;
  std::unique_ptr<TFRecordWriter> writer_;
  SummaryWriterOptions options_;
  double last_flush_ = 0;  // wall time in seconds
};

// TensorFlow's default histogram bucket limits (the right edges; the last is DBL_MAX).
const std::vector<double>& default_histogram_buckets();

}  // namespace gradflow
