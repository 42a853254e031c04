// The TensorBoard callback: epoch (and optionally batch) scalars, weight histograms, the layer graph.
#include <filesystem>

#include "core/io/summary_writer.h"
#include "core/nn/callbacks.h"
#include "core/nn/model.h"

namespace gradflow {
namespace {

class TensorBoardCallback : public Callback {
 public:
  explicit TensorBoardCallback(TensorBoardOptions o) : o_(std::move(o)) {
    if (o_.update_freq != "epoch") {
      try {
        batch_every_ = std::stoll(o_.update_freq);
      } catch (const std::exception&) {
        batch_every_ = 0;
      }
      if (batch_every_ <= 0) {
        throw ValueError(str_cat("TensorBoard: update_freq must be \"epoch\" or a positive number, got \"",
                                 o_.update_freq, "\""));
      }
    }
  }

  void on_train_begin(const Logs&) override {
    train_ = std::make_unique<SummaryWriter>((std::filesystem::path(o_.log_dir) / "train").string());
    if (o_.write_graph) train_->layer_graph(layer_graph());
  }
  void on_train_batch_end(int64_t batch, const Logs& logs) override {
    ++global_step_;
    if (batch_every_ == 0 || global_step_ % batch_every_ != 0) return;
    for (const auto& [k, v] : logs) train_->scalar("batch_" + k, v, global_step_);
  }
  void on_epoch_end(int epoch, const Logs& logs) override {
    for (const auto& [k, v] : logs) {
      if (k.rfind("val_", 0) == 0) {
        if (!validation_) {
          validation_ = std::make_unique<SummaryWriter>((std::filesystem::path(o_.log_dir) / "validation").string());
        }
        validation_->scalar("epoch_" + k.substr(4), v, epoch);
      } else {
        train_->scalar("epoch_" + k, v, epoch);
      }
    }
    if (o_.histogram_freq > 0 && epoch % o_.histogram_freq == 0) {
      for (const Variable& v : model_->variables()) train_->histogram(v.name(), v.value_unwatched(), epoch);
    }
    train_->flush();
    if (validation_) validation_->flush();
  }
  void on_train_end(const Logs&) override {
    train_.reset();
    validation_.reset();
  }

 private:
  // One node per layer, fed by the layers before it (the model's graph at layer granularity).
  std::vector<GraphNode> layer_graph() const {
    std::vector<GraphNode> nodes{{.name = "input", .op = "InputLayer"}};
    std::string previous = "input";
    for (const Layer& l : model_->layers()) {
      GraphNode n{.name = l.name(), .op = keras_class_name(l.impl().type_name()), .inputs = {previous}};
      n.attrs["params"] = std::to_string(l.impl().count_params());
      nodes.push_back(n);
      previous = l.name();
    }
    return nodes;
  }

  TensorBoardOptions o_;
  int64_t batch_every_ = 0;
  int64_t global_step_ = 0;
  std::unique_ptr<SummaryWriter> train_, validation_;
};

}  // namespace

CallbackPtr TensorBoard(TensorBoardOptions options) { return std::make_shared<TensorBoardCallback>(std::move(options)); }

}  // namespace gradflow
