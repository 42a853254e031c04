// matmul: [..., m, k] x [..., k, n] -> [..., m, n] with broadcast batch dimensions and optional
// transposes; 1-D operands are promoted as in NumPy. Kernels: cpu/matmul_cpu.cc (BLAS),
// cuda/matmul_cuda.cc (cuBLAS).
#include "core/ops/internal.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

MetaList infer_matmul(const TensorList& in, const Attrs& a) {
  const Tensor& x = in[0];
  const Tensor& y = in[1];
  check_same_dtype("matmul", x, y);
  check_float("matmul", x);
  if (x.rank() < 2 || y.rank() < 2) {
    throw ShapeError(str_cat("matmul: operands need rank >= 2, got ", shape_str(x.shape()), " and ",
                                  shape_str(y.shape())));
  }
  bool ta = a.get<bool>("transpose_a"), tb = a.get<bool>("transpose_b");
  int64_t m = x.dim(ta ? -1 : -2), k = x.dim(ta ? -2 : -1);
  int64_t k2 = y.dim(tb ? -1 : -2), n = y.dim(tb ? -2 : -1);
  if (k != k2) {
    throw ShapeError(str_cat("matmul: ", shape_str(x.shape()), ta ? "^T" : "", " x ", shape_str(y.shape()),
                                  tb ? "^T" : "", ": inner dimensions ", k, " and ", k2, " differ"));
  }
  Shape batch = broadcast_shapes("matmul", absl::MakeConstSpan(x.shape()).first(x.rank() - 2),
                                 absl::MakeConstSpan(y.shape()).first(y.rank() - 2));
  batch.push_back(m);
  batch.push_back(n);
  return {TensorMeta{batch, x.dtype()}};
}

// Only the gradients some source needs: the first layer's input is data, and its gradient would cost as
// much as the kernel's. Each goes where the tape asks (OutputInto), when its shape is the product's.
TensorList matmul_grad(const GradContext& c) {
  const Tensor& a = c.inputs[0];
  const Tensor& b = c.inputs[1];
  const Tensor& g = c.grad_outputs[0];
  bool ta = c.attrs.get<bool>("transpose_a"), tb = c.attrs.get<bool>("transpose_b");
  Tensor da, db;
  if (c.needs(0)) {
    OutputInto into(c.destination(0));
    if (!ta) {
      da = tb ? matmul(g, b) : matmul(g, b, false, true);
    } else {
      da = tb ? matmul(b, g, true, true) : matmul(b, g, false, true);
    }
    da = sum_to(da, a.shape());
  }
  if (c.needs(1)) {
    OutputInto into(c.destination(1));
    if (!tb) {
      db = ta ? matmul(a, g) : matmul(a, g, true, false);
    } else {
      db = ta ? matmul(g, a, true, true) : matmul(g, a, true, false);
    }
    db = sum_to(db, b.shape());
  }
  return {da, db};
}

}  // namespace

void register_matmul_ops(OpRegistry& r) { r.define({.name = "matmul", .infer = infer_matmul, .grad = matmul_grad}); }

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  static const OpDef& op = op_def("matmul");
  // NumPy's 1-D rules: a vector on the left is a row, on the right a column; the added axis is removed.
  if (a.rank() == 1 || b.rank() == 1) {
    Tensor a2 = a.rank() == 1 ? a.unsqueeze(0) : a;
    Tensor b2 = b.rank() == 1 ? b.unsqueeze(1) : b;
    Tensor out = run_op1(op, {a2, b2}, {{"transpose_a", a.rank() == 1 ? false : transpose_a},
                                        {"transpose_b", b.rank() == 1 ? false : transpose_b}});
    if (b.rank() == 1) out = out.squeeze(-1);
    if (a.rank() == 1) out = out.squeeze(-2 + (b.rank() == 1 ? 1 : 0));
    return out;
  }
  return run_op1(op, {a, b}, {{"transpose_a", transpose_a}, {"transpose_b", transpose_b}});
}

}  // namespace gradflow
