#pragma once
// The argument checks every compiled loop runs before it touches memory. The loops read and write
// tensors through raw pointers sized from u and h0; a tensor of another shape, dtype, device or
// layout (a parameter replaced by one of another size, a direct call of rnnkit._fused) would read
// or write out of bounds. Each loop checks every argument here first and raises a RuntimeError
// naming it.
#include <torch/extension.h>

#include <vector>

namespace rnnkit {

inline bool absent(const torch::Tensor& t) { return !t.defined() || t.numel() == 0; }

// The sequence tensor that fixes T, B and the loop's dtype: 3-D, float32/float64, CPU, contiguous.
inline void check_steps(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.defined() && t.dim() == 3, name, " must be a 3-D tensor (T, B, ·), got ",
              t.defined() ? t.sizes() : at::IntArrayRef{});
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU (the compiled loops run there), got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// The hidden size H from a (B, H) state, after checking it is 2-D.
inline int64_t hidden_size_of(const torch::Tensor& state, const char* name) {
  TORCH_CHECK(state.defined() && state.dim() == 2, name, " must be a 2-D tensor (B, H), got ",
              state.defined() ? state.sizes() : at::IntArrayRef{});
  TORCH_CHECK(state.size(1) > 0, name, " must have at least one hidden unit, got ", state.sizes());
  return state.size(1);
}

// A tensor a loop reads or writes by pointer: the loop's dtype, CPU, contiguous, exactly these sizes.
inline void check_dense(const torch::Tensor& t, const char* name, const torch::Tensor& like,
                        at::IntArrayRef sizes) {
  TORCH_CHECK(t.defined(), name, " must be a tensor of shape ", sizes);
  TORCH_CHECK(t.sizes() == sizes, name, " must have shape ", sizes, ", got ", t.sizes());
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " must have dtype ", like.scalar_type(), ", got ",
              t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// An optional tensor: empty when absent, else as check_dense.
inline void check_optional(const torch::Tensor& t, const char* name, const torch::Tensor& like,
                           at::IntArrayRef sizes) {
  if (!absent(t)) check_dense(t, name, like, sizes);
}

// A matrix used only through ATen's products (any strides): the loop's dtype, CPU, these sizes.
inline void check_matrix(const torch::Tensor& t, const char* name, const torch::Tensor& like,
                         at::IntArrayRef sizes) {
  TORCH_CHECK(t.defined() && t.sizes() == sizes, name, " must have shape ", sizes, ", got ",
              t.defined() ? t.sizes() : at::IntArrayRef{});
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " must have dtype ", like.scalar_type(), ", got ",
              t.scalar_type());
}

// The rows still running at each step (the batch sorted longest first): T counts, each in [0, B],
// never increasing.
inline void check_running(const std::vector<int64_t>& running, int64_t T, int64_t B) {
  TORCH_CHECK(static_cast<int64_t>(running.size()) == T, "running must give one count per step (", T,
              "), got ", running.size());
  for (int64_t t = 0; t < T; ++t) {
    TORCH_CHECK(running[t] >= 0 && running[t] <= B, "running[", t, "] must be in [0, ", B, "], got ", running[t]);
    TORCH_CHECK(t == 0 || running[t] <= running[t - 1], "running must not increase (the batch is sorted longest "
                "first), got ", running[t - 1], " then ", running[t], " at step ", t);
  }
}

// Per-sequence lengths (B,) int64 on the CPU, contiguous, or empty (every sequence runs all steps).
inline void check_lengths(const torch::Tensor& lengths, int64_t B) {
  if (absent(lengths)) return;
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == B, "lengths must have shape (", B, "), got ", lengths.sizes());
  TORCH_CHECK(lengths.device().is_cpu() && lengths.scalar_type() == at::kLong && lengths.is_contiguous(),
              "lengths must be a contiguous int64 CPU tensor, got ", lengths.scalar_type(), " on ", lengths.device());
}

}  // namespace rnnkit
