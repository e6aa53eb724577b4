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

// sigma(x) = 1 / (1 + e^{-x}), with e^{-x} kept finite: Vectorized's exp of an argument past the
// type's range (about 88 for float, 709 for double) is not inf but NaN, which made every gate with a
// pre-activation below about -88 NaN in float32. Capping -x at 80 (float) or 700 (double) changes
// sigma only where it is below 2e-35 (1e-304): it stays that small instead of smaller.
template <typename T>
inline Vec<T> exp_argument_cap() { return Vec<T>(sizeof(T) == 4 ? T(80) : T(700)); }

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  return Vec<T>(T(1)) / (Vec<T>(T(1)) + at::vec::minimum(x.neg(), exp_argument_cap<T>()).exp());
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}), finite for every finite x.
template <typename T>
inline Vec<T> softplus(const Vec<T>& x) {
  return at::vec::maximum(x, Vec<T>(T(0))) + x.abs().neg().exp().log1p();
}

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
