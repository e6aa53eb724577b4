// minGRU and minLSTM (Feng et al. 2024; rnnkit/cells/minimal.py): the coefficients and the scan
// h_t = a_t h_{t-1} + (1 - a_t) g~_t in one pass over time, forward and backward.
//   minGRU:  u = [k, p];       z = sig(k), a = 1 - z,                 g~ = g(p)
//   minLSTM: u = [k_f, k_i, p]; f = sig(k_f), i = sig(k_i), a = f / (f + i), g~ = g(p)
//            (a computed as sig(softplus(-k_i) - softplus(-k_f)), finite where f and i underflow)
//   g(p) = p + 1/2 for p >= 0, sig(p) otherwise.
// The Python form (rnnkit/engine/scan.py) makes about a dozen passes over (T, B, H) arrays for the
// coefficients and their gradients; here each step reads u_t once and writes h_t (forward) or
// du_t (backward), recomputing the gates from u_t instead of storing them. Backwards, with
// delta_t = dL/dh_t through every path:
//   delta_t = g_t + a_{t+1} delta_{t+1},  dL/da_t = delta_t (h_{t-1} - g~_t),  dL/dg~_t = delta_t (1 - a_t)
// and the gates' derivatives as in the cells' coefficients_backward. Steps at or past a sequence's
// length (lengths (B), or empty for all T) carry the state unchanged (a = 1, b = 0).
#include "checks.h"
#include "loops.h"
#include "vec_math.h"

namespace {

using namespace rnnkit;   // Vec, load, store, sigmoid, maybe (vec_math.h)

template <typename T>
struct Coefficients {
  Vec<T> a, cand;            // a_t and g~_t
  Vec<T> da_dk0, da_dk1;     // da/dk (minGRU: k; minLSTM: k_f, k_i)
  Vec<T> dcand_dp;           // g'(p)
};

template <typename T>
inline Coefficients<T> coefficients(const T* u, int64_t j, int64_t m, int64_t H, bool lstm) {
  const Vec<T> one(T(1)), zero(T(0)), half(T(0.5));
  Coefficients<T> c;
  const Vec<T> p = load(u + (lstm ? 2 : 1) * H + j, m);
  const Vec<T> sp = sigmoid(p);
  const auto positive = p >= zero;
  c.cand = Vec<T>::blendv(sp, p + half, positive);
  c.dcand_dp = Vec<T>::blendv(sp * (one - sp), one, positive);
  if (lstm) {
    // a = f / (f + i) = sig(log f - log i) = sig(softplus(-k_i) - softplus(-k_f)): f and i can both
    // underflow to 0, their ratio cannot. da/dk_f = a (1 - a)(1 - f), da/dk_i = -a (1 - a)(1 - i).
    const Vec<T> k_f = load(u + j, m), k_i = load(u + H + j, m);
    c.a = sigmoid(softplus(zero - k_i) - softplus(zero - k_f));
    const Vec<T> a_a = c.a * (one - c.a);
    c.da_dk0 = a_a * (one - sigmoid(k_f));                 // da/dk_f
    c.da_dk1 = zero - a_a * (one - sigmoid(k_i));          // da/dk_i
  } else {
    const Vec<T> z = sigmoid(load(u + j, m));
    c.a = one - z;
    c.da_dk0 = zero - z * (one - z);                   // da/dk, a = 1 - sig(k)
  }
  return c;
}

inline bool active(const int64_t* lengths, int64_t b, int64_t t) { return !lengths || t < lengths[b]; }

// Checks u (T, B, 2H or 3H), h0 (B, H) and lengths (B or empty); returns H.
int64_t check_scan_arguments(const torch::Tensor& u, const torch::Tensor& h0, const torch::Tensor& lengths,
                             bool lstm) {
  check_steps(u, "u");
  const int64_t H = hidden_size_of(h0, "h0"), gates = lstm ? 3 : 2;
  TORCH_CHECK(u.size(2) == gates * H, "u must have shape (T, B, ", gates, "H) = (", u.size(0), ", ", u.size(1),
              ", ", gates * H, "), got ", u.sizes());
  check_dense(h0, "h0", u, {u.size(1), H});
  check_lengths(lengths, u.size(1));
  return H;
}

}  // namespace

// u (T, B, G) with G = 2H (minGRU) or 3H (minLSTM); h0 (B, H). Returns h (T, B, H); past a
// sequence's end h holds its last state, so h[T-1] is the final state.
torch::Tensor minimal_scan_forward(torch::Tensor u, torch::Tensor h0, torch::Tensor lengths, bool lstm) {
  const int64_t H = check_scan_arguments(u, h0, lengths, lstm);
  const int64_t T = u.size(0), B = u.size(1), G = u.size(2);
  auto h_all = torch::empty({T, B, H}, u.options());
  const int64_t* len = lengths.defined() && lengths.numel() ? lengths.data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "minimal_scan_forward", [&] {
    const int64_t K = Vec<scalar_t>::size();
    const scalar_t* up = u.data_ptr<scalar_t>();
    scalar_t* hp = h_all.data_ptr<scalar_t>();
    const scalar_t* h0p = h0.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* prev = t ? hp + ((t - 1) * B + b) * H : h0p + b * H;
        scalar_t* out = hp + (t * B + b) * H;
        const scalar_t* ut = up + (t * B + b) * G;
        const bool on = active(len, b, t);
        for (int64_t j = 0; j < H; j += K) {
          const int64_t m = std::min(K, H - j);
          const Vec<scalar_t> h_prev = load(prev + j, m);
          if (!on) { store(h_prev, out + j, m); continue; }
          const auto c = coefficients(ut, j, m, H, lstm);
          store(c.cand + c.a * (h_prev - c.cand), out + j, m);
        }
      }
    }
  });
  return h_all;
}

// grad_h (T, B, H): dL/dh_t through the outputs (and, at T-1, the final state). Returns du (T, B, G)
// and dh0 (B, H).
std::vector<torch::Tensor> minimal_scan_backward(torch::Tensor u, torch::Tensor h_all, torch::Tensor h0,
                                                 torch::Tensor grad_h, torch::Tensor lengths, bool lstm) {
  const int64_t H = check_scan_arguments(u, h0, lengths, lstm);
  const int64_t T = u.size(0), B = u.size(1), G = u.size(2);
  check_dense(h_all, "h_all", u, {T, B, H});
  check_dense(grad_h, "grad_h", u, {T, B, H});
  auto du = torch::zeros_like(u);
  auto carry = torch::zeros({B, H}, u.options());      // a_{t+1} delta_{t+1}
  const int64_t* len = lengths.defined() && lengths.numel() ? lengths.data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "minimal_scan_backward", [&] {
    const int64_t K = Vec<scalar_t>::size();
    const Vec<scalar_t> one(scalar_t(1));
    const scalar_t* up = u.data_ptr<scalar_t>();
    const scalar_t* hp = h_all.data_ptr<scalar_t>();
    const scalar_t* h0p = h0.data_ptr<scalar_t>();
    const scalar_t* gp = grad_h.data_ptr<scalar_t>();
    scalar_t* dup = du.data_ptr<scalar_t>();
    scalar_t* cp = carry.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* prev = t ? hp + ((t - 1) * B + b) * H : h0p + b * H;
        const scalar_t* ut = up + (t * B + b) * G;
        const scalar_t* g = gp + (t * B + b) * H;
        scalar_t* d = dup + (t * B + b) * G;
        scalar_t* cr = cp + b * H;
        const bool on = active(len, b, t);
        for (int64_t j = 0; j < H; j += K) {
          const int64_t m = std::min(K, H - j);
          const Vec<scalar_t> delta = load(g + j, m) + load(cr + j, m);
          if (!on) { store(delta, cr + j, m); continue; }            // a = 1: delta passes through
          const auto c = coefficients(ut, j, m, H, lstm);
          const Vec<scalar_t> d_a = delta * (load(prev + j, m) - c.cand);
          store(d_a * c.da_dk0, d + j, m);
          if (lstm) store(d_a * c.da_dk1, d + H + j, m);
          store(delta * (one - c.a) * c.dcand_dp, d + (lstm ? 2 : 1) * H + j, m);
          store(c.a * delta, cr + j, m);
        }
      }
    }
  });
  return {du, carry};
}
