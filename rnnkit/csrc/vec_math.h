#pragma once
// Shared by the compiled loops: vectorised math and the helpers every loop needs.
//
// Vectorised math: ATen's Vectorized<T> (exp and tanh through Sleef, which libtorch exports), at the
// widest instruction set the compiler targets (setup.py builds with -march=native).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define CPU_CAPABILITY_AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY_AVX2
#endif
#include <ATen/cpu/vec/vec.h>

#include <torch/extension.h>

#include <algorithm>
#include <vector>

namespace rnnkit {

template <typename T>
using Vec = at::vec::Vectorized<T>;

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) { return Vec<T>(T(1)) / (Vec<T>(T(1)) + x.neg().exp()); }

// Load / store `count` lanes (a full vector, or the tail of a row).
template <typename T>
inline Vec<T> load(const T* p, int64_t count) {
  return count == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, count);
}
template <typename T>
inline void store(const Vec<T>& v, T* p, int64_t count) {
  if (count == Vec<T>::size()) v.store(p); else v.store(p, count);
}

// A (T, B, ...) buffer that the loop fills row-prefix by row-prefix: left uninitialised when every
// step runs the whole batch (every element is written), zero-filled when some sequences end early
// (their rows past the end must read as zero). Saves a memset of each buffer on full batches.
inline torch::Tensor step_buffer(at::IntArrayRef sizes, const at::TensorOptions& options,
                                 const std::vector<int64_t>& running) {
  const int64_t batch = sizes[1];
  const bool full = std::all_of(running.begin(), running.end(), [&](int64_t n) { return n == batch; });
  return full ? torch::empty(sizes, options) : torch::zeros(sizes, options);
}

// A tensor's data, or null for an absent (empty) optional tensor.
template <typename T>
const T* maybe(const torch::Tensor& t) { return t.defined() && t.numel() ? t.data_ptr<T>() : nullptr; }

}  // namespace rnnkit
