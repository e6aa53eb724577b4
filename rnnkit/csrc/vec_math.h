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

// Zoneout of one state tensor at one step (Krueger et al. 2017, arXiv:1606.01305):
//   s_t = m_t s_{t-1} + (1 - m_t) s~_t,   backwards  ds~_t = (1 - m_t) ds_t,  ds_{t-1} += m_t ds_t,
// where s~_t is the step's new value. In training m_t is the keep-old indicator (0 or 1 per unit, the
// step's rows of a (T, B, S) mask); at evaluation it is the constant rate. `keep` points at the step's
// (n, S) rows, or is null for the constant.
template <typename T>
struct Zone {
  const T* keep;
  T rate;

  // m_t for the `count` units from `offset` (offset = row * S + unit).
  Vec<T> weight(int64_t offset, int64_t count) const { return keep ? load(keep + offset, count) : Vec<T>(rate); }

  // m s_{t-1} + (1 - m) s~_t: in training a select, so that a kept unit is the old value exactly.
  Vec<T> mix(const Vec<T>& old, const Vec<T>& fresh, int64_t offset, int64_t count) const {
    if (keep) return Vec<T>::blendv(fresh, old, load(keep + offset, count) > Vec<T>(T(0)));
    return fresh + Vec<T>(rate) * (old - fresh);
  }
};

// The zoneout of a state at step t: the step's rows of its (T, B, S) mask (inner (B, S) block
// contiguous, steps at any stride, so that one draw split by state needs no copy), or the rate.
template <typename T>
Zone<T> zone_at(const torch::Tensor& keep, double rate, int64_t t) {
  if (keep.defined() && keep.numel()) return Zone<T>{keep.data_ptr<T>() + t * keep.stride(0), T(0)};
  return Zone<T>{nullptr, T(rate)};
}

// Checks a zoneout mask: (T, B, S), each step's (B, S) rows contiguous, the loop's dtype.
inline void check_zoneout_mask(const torch::Tensor& keep, int64_t T, int64_t B, int64_t S,
                               const torch::Tensor& like, const char* name) {
  if (!keep.defined() || !keep.numel()) return;
  TORCH_CHECK(keep.dim() == 3 && keep.size(0) == T && keep.size(1) == B && keep.size(2) == S, name,
              " must have shape (", T, ", ", B, ", ", S, "), got ", keep.sizes());
  TORCH_CHECK(keep.stride(2) == 1 && keep.stride(1) == S, name, "'s (B, S) block of each step must be contiguous");
  TORCH_CHECK(keep.device().is_cpu(), name, " must be on the CPU, got ", keep.device());
  TORCH_CHECK(keep.scalar_type() == like.scalar_type(), name, " must have dtype ", like.scalar_type(), ", got ",
              keep.scalar_type());
}

// Checks a recurrent dropout mask: (B, S) contiguous, the loop's dtype.
inline void check_recurrent_mask(const torch::Tensor& mask, int64_t B, int64_t S, const torch::Tensor& like) {
  if (!mask.defined() || !mask.numel()) return;
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == S, "recurrent_mask must have shape (", B,
              ", ", S, "), got ", mask.sizes());
  TORCH_CHECK(mask.device().is_cpu(), "recurrent_mask must be on the CPU, got ", mask.device());
  TORCH_CHECK(mask.is_contiguous() && mask.scalar_type() == like.scalar_type(),
              "recurrent_mask must be contiguous with dtype ", like.scalar_type());
}

// A tensor's data, or null for an absent (empty) optional tensor.
template <typename T>
const T* maybe(const torch::Tensor& t) { return t.defined() && t.numel() ? t.data_ptr<T>() : nullptr; }

}  // namespace rnnkit
