// The LSTM family's time loop, forward and backward, in one C++ call each.
//
// Everything in the Python hand BPTT (rnnkit/engine/bptt.py with rnnkit/cells/lstm.py) that runs once
// per time step moves here: the recurrent product a_t = u_t + h_{t-1} U^T + b (ATen's addmm, MKL)
// and one fused pass over the (n_t, H) units for all gate activations, the cell and the output
// (forward), or for the whole delta recursion of one step (backward). What runs once per sequence
// (the input projection, the weight gradients as one product over all T*B rows, the peephole
// gradients) stays in Python, in one large ATen call each.
//
// Gates are stacked in weight_hh in the order i, f, g, o, leaving out the ones a variant drops;
// `offset_*` gives each gate's column block (in units of H) or -1 when the gate is absent (fixed at 1).
// Equations (Greff et al. 2017, vanilla LSTM; every Odyssey variant is one flag away):
//   i = sig(a_i + p_i c_{t-1}),  f = sig(a_f + p_f c_{t-1})  (cifg: f = 1 - i),  g = tanh(a_g) (niaf: a_g)
//   c_t = f c_{t-1} + i g,  o = sig(a_o + p_o c_t),  s = tanh(c_t) (noaf: c_t),  h_t = o s
// fgr (full gate recurrence) adds r_t = ifo_{t-1} W_gg^T (one more product per step) to the
// pre-activations of i, f, o, where ifo_{t-1} = [i, f, o]_{t-1} is a third state (B, 3H).
// Lengths: the batch is sorted longest first; step t touches only its first running[t] rows, so a
// finished sequence's state rows keep the state at its end.
// Recurrent dropout (Gal & Ghahramani 2016): one mask r (B, H) per sequence, the same at every step,
// on the state entering the recurrent product only: a_t = u_t + (h_{t-1} r) U^T + b (not the
// peepholes, not fgr's W_gg product); backwards dh_{t-1} gets (da U) r.
// Zoneout (Krueger et al. 2017): each state (h, c; and fgr's ifo) is s_t = m s_{t-1} + (1 - m) s~_t
// with s~_t the step's new value (vec_math.h's Zone); the output is the zoned h_t. The gates' own
// equations see the zoned previous state and produce the candidates s~_t, so the backward needs
// the candidate c~_t (tanh(c~_t), o's peephole) besides the zoned c_{t-1}.
#include "checks.h"
#include "loops.h"
#include "vec_math.h"

namespace {

using namespace rnnkit;   // Vec, load, store, sigmoid, maybe (vec_math.h)

struct Layout {
  int64_t H, G;                        // hidden units; width of the gate stack (gates * H)
  int64_t i, f, g, o;                  // column offsets of the gates' blocks, or -1
  bool cifg, g_identity, h_identity;
};

// One step's gates and cell for rows [0, n): `gates` holds a_t on entry and the activations
// (i, f, g, o in their blocks) on exit; p_* are null where a gate has no peephole. For fgr, `rec`
// (n, 3H) holds r_t, added to i, f, o, and the new [i, f, o] go to `ifo` (n, 3H); else both null.
// `c_prev`, `h_prev`, `ifo` hold the (zoned) state of step t-1. Without zoneout the new c, h go to
// `c`, `h`; with it (Zoned) the zoned c_t, h_t go there, the candidate c~_t to `c_cand`, and the
// zoned ifo_t to `ifo` and `ifo_out` (fgr).
template <typename T, bool Zoned>
void forward_pointwise(const Layout& L, int64_t n, T* gates, const T* c_prev, T* c, T* h,
                       const T* p_i, const T* p_f, const T* p_o, const T* rec, T* ifo,
                       const T* h_prev, T* c_cand, T* ifo_out, const Zone<T>& zh, const Zone<T>& zc,
                       const Zone<T>& zifo) {
  const int64_t H = L.H, G = L.G, K = Vec<T>::size();
  const Vec<T> one(T(1));
  for (int64_t r = 0; r < n; ++r) {
    T* a = gates + r * G;
    const T* cp = c_prev + r * H;
    const T* rec_r = rec ? rec + r * 3 * H : nullptr;
    T* ifo_r = ifo ? ifo + r * 3 * H : nullptr;
    for (int64_t j = 0; j < H; j += K) {
      const int64_t m = std::min(K, H - j), row = r * H + j;
      const Vec<T> c_old = load(cp + j, m);
      Vec<T> i = one, f = one, o = one;
      if (L.i >= 0) {
        Vec<T> x = load(a + L.i + j, m);
        if (p_i) x = x + load(p_i + j, m) * c_old;
        if (rec_r) x = x + load(rec_r + j, m);
        i = sigmoid(x);
        store(i, a + L.i + j, m);
      }
      if (L.cifg) {
        f = one - i;
      } else if (L.f >= 0) {
        Vec<T> x = load(a + L.f + j, m);
        if (p_f) x = x + load(p_f + j, m) * c_old;
        if (rec_r) x = x + load(rec_r + H + j, m);
        f = sigmoid(x);
        store(f, a + L.f + j, m);
      }
      Vec<T> g = load(a + L.g + j, m);
      if (!L.g_identity) g = g.tanh();
      store(g, a + L.g + j, m);
      const Vec<T> c_new = f * c_old + i * g;
      if (L.o >= 0) {
        Vec<T> x = load(a + L.o + j, m);
        if (p_o) x = x + load(p_o + j, m) * c_new;
        if (rec_r) x = x + load(rec_r + 2 * H + j, m);
        o = sigmoid(x);
        store(o, a + L.o + j, m);
      }
      if (ifo_r) {
        if constexpr (Zoned) {
          const int64_t row3 = r * 3 * H + j;
          const Vec<T> i_z = zifo.mix(load(ifo_r + j, m), i, row3, m);
          const Vec<T> f_z = zifo.mix(load(ifo_r + H + j, m), f, row3 + H, m);
          const Vec<T> o_z = zifo.mix(load(ifo_r + 2 * H + j, m), o, row3 + 2 * H, m);
          store(i_z, ifo_r + j, m);
          store(f_z, ifo_r + H + j, m);
          store(o_z, ifo_r + 2 * H + j, m);
          store(i_z, ifo_out + row3, m);
          store(f_z, ifo_out + row3 + H, m);
          store(o_z, ifo_out + row3 + 2 * H, m);
        } else {
          store(i, ifo_r + j, m);
          store(f, ifo_r + H + j, m);
          store(o, ifo_r + 2 * H + j, m);
        }
      }
      const Vec<T> s = L.h_identity ? c_new : c_new.tanh();
      if constexpr (Zoned) {
        store(c_new, c_cand + row, m);
        store(zc.mix(c_old, c_new, row, m), c + row, m);
        store(zh.mix(load(h_prev + row, m), o * s, row, m), h + row, m);
      } else {
        store(c_new, c + row, m);
        store(o * s, h + row, m);
      }
    }
  }
}

// One step of the delta recursion for rows [0, n): from dh, dc (dc is updated in place to
// dc_{t-1}) and the saved activations, the pre-activation gradients d_a (n, G). For fgr, `d_ifo`
// (n, 3H) is the gradient reaching the state ifo_t = [i, f, o]_t from step t + 1; else null.
// The peepholes' gradients of the step, Σ_rows δa_i c_{t-1}, δa_f c_{t-1}, δa_o c_t, are added to
// dp (3, H: rows i, f, o), for the gates that have a peephole.
// With zoneout (Zoned) dh, dc, d_ifo are the gradients of the zoned states and `c` holds the
// candidate c~_t: the step's equations get (1 - m) of each, and m of each is carried to step t-1:
// into `dh_carry` (n, H), added to dc_{t-1}, and left in `d_ifo` (in place).
template <typename T, bool Zoned>
void backward_pointwise(const Layout& L, int64_t n, const T* gates, const T* c_prev, const T* c,
                        const T* dh, T* dc, T* d_a, const T* p_i, const T* p_f, const T* p_o,
                        T* d_ifo, T* dp, T* dh_carry, const Zone<T>& zh, const Zone<T>& zc,
                        const Zone<T>& zifo) {
  const int64_t H = L.H, G = L.G, K = Vec<T>::size();
  const Vec<T> one(T(1)), zero(T(0));
  for (int64_t r = 0; r < n; ++r) {
    const T* act = gates + r * G;
    T* da = d_a + r * G;
    T* d_ifo_r = d_ifo ? d_ifo + r * 3 * H : nullptr;
    for (int64_t j = 0; j < H; j += K) {
      const int64_t m = std::min(K, H - j), row = r * H + j;
      const Vec<T> i = L.i >= 0 ? load(act + L.i + j, m) : one;
      const Vec<T> g = load(act + L.g + j, m);
      const Vec<T> o = L.o >= 0 ? load(act + L.o + j, m) : one;
      const Vec<T> f = L.cifg ? one - i : (L.f >= 0 ? load(act + L.f + j, m) : one);
      const Vec<T> c_new = load(c + row, m), c_old = load(c_prev + row, m);
      Vec<T> dh_j = load(dh + row, m), dc_in = load(dc + row, m), dc_carry = zero;
      Vec<T> d_i_next = zero, d_f_next = zero, d_o_next = zero;    // δ of ifo_t's blocks
      if (d_ifo_r) {
        d_i_next = load(d_ifo_r + j, m);
        d_f_next = load(d_ifo_r + H + j, m);
        d_o_next = load(d_ifo_r + 2 * H + j, m);
      }
      if constexpr (Zoned) {
        const Vec<T> m_h = zh.weight(row, m), m_c = zc.weight(row, m);
        store(m_h * dh_j, dh_carry + row, m);
        dh_j = (one - m_h) * dh_j;
        dc_carry = m_c * dc_in;
        dc_in = (one - m_c) * dc_in;
        if (d_ifo_r) {
          const int64_t row3 = r * 3 * H + j;
          const Vec<T> m_i = zifo.weight(row3, m), m_f = zifo.weight(row3 + H, m);
          const Vec<T> m_o = zifo.weight(row3 + 2 * H, m);
          store(m_i * d_i_next, d_ifo_r + j, m);
          store(m_f * d_f_next, d_ifo_r + H + j, m);
          store(m_o * d_o_next, d_ifo_r + 2 * H + j, m);
          d_i_next = (one - m_i) * d_i_next;
          d_f_next = (one - m_f) * d_f_next;
          d_o_next = (one - m_o) * d_o_next;
        }
      }
      const Vec<T> s = L.h_identity ? c_new : c_new.tanh();
      Vec<T> dc_j = dc_in + dh_j * o * (L.h_identity ? one : one - s * s);
      if (L.o >= 0) {
        const Vec<T> d_o = dh_j * s + d_o_next;
        const Vec<T> da_o = d_o * o * (one - o);
        store(da_o, da + L.o + j, m);
        if (p_o) {
          dc_j = dc_j + da_o * load(p_o + j, m);
          store(load(dp + 2 * H + j, m) + da_o * c_new, dp + 2 * H + j, m);
        }
      }
      const Vec<T> dg = L.i >= 0 ? dc_j * i : dc_j;
      store(L.g_identity ? dg : dg * (one - g * g), da + L.g + j, m);
      const Vec<T> df = dc_j * c_old + d_f_next;
      Vec<T> dc_prev = dc_j * f;
      if (L.i >= 0) {
        const Vec<T> di_own = dc_j * g + d_i_next;
        const Vec<T> di = L.cifg ? di_own - df : di_own;
        const Vec<T> da_i = di * i * (one - i);
        store(da_i, da + L.i + j, m);
        if (p_i) {
          dc_prev = dc_prev + da_i * load(p_i + j, m);
          store(load(dp + j, m) + da_i * c_old, dp + j, m);
        }
      }
      if (L.f >= 0 && !L.cifg) {
        const Vec<T> da_f = df * f * (one - f);
        store(da_f, da + L.f + j, m);
        if (p_f) {
          dc_prev = dc_prev + da_f * load(p_f + j, m);
          store(load(dp + H + j, m) + da_f * c_old, dp + H + j, m);
        }
      }
      if constexpr (Zoned) dc_prev = dc_prev + dc_carry;
      store(dc_prev, dc + row, m);
    }
  }
}

Layout layout_of(int64_t H, int64_t G, const std::vector<int64_t>& offsets, bool cifg, bool g_identity,
                 bool h_identity) {
  TORCH_CHECK(offsets.size() == 4, "offsets must list the blocks of i, f, g, o");
  TORCH_CHECK(G % H == 0, "u's last dimension (", G, ") must be a multiple of the hidden size (", H, ")");
  for (int64_t k = 0; k < 4; ++k)
    TORCH_CHECK(offsets[k] >= -1 && offsets[k] < G / H, "offsets[", k, "] must be a gate block in [0, ", G / H,
                ") or -1 (absent), got ", offsets[k]);
  auto at = [&](int64_t k) { return offsets[k] < 0 ? int64_t(-1) : offsets[k] * H; };
  return Layout{H, G, at(0), at(1), at(2), at(3), cifg, g_identity, h_identity};
}

// The peepholes p_i, p_f, p_o: each (H) or empty.
void check_peepholes(const torch::Tensor& p_i, const torch::Tensor& p_f, const torch::Tensor& p_o,
                     const torch::Tensor& like, int64_t H) {
  check_optional(p_i, "p_i", like, {H});
  check_optional(p_f, "p_f", like, {H});
  check_optional(p_o, "p_o", like, {H});
}

}  // namespace

// u (T, B, G) pre-activations from the input; h0, c0 (B, H); weight_hh_t (H, G) = U^T; bias_hh (G)
// or empty; for fgr weight_gg_t (3H, 3H) = W_gg^T and ifo0 (B, 3H), else both empty.
// recurrent_mask (B, H) or empty; zoneout_h, zoneout_c (T, B, H), zoneout_ifo (T, B, 3H): the
// keep-old indicators of training, or empty, with zoneout_rate the evaluation rate (0: none).
// Returns h_all, c_all (T, B, H) (the zoned states; zero past each end), gates (T, B, G)
// activations, the final h, c (B, H), the final ifo (B, 3H; empty unless fgr), and with zoneout
// the candidates c~ (T, B, H) and, for fgr, the zoned ifo states (T, B, 3H) (else empty).
std::vector<torch::Tensor> lstm_family_forward(torch::Tensor u, torch::Tensor h0, torch::Tensor c0,
                                               torch::Tensor weight_hh_t, torch::Tensor bias_hh,
                                               torch::Tensor p_i, torch::Tensor p_f, torch::Tensor p_o,
                                               torch::Tensor weight_gg_t, torch::Tensor ifo0,
                                               torch::Tensor recurrent_mask, torch::Tensor zoneout_h,
                                               torch::Tensor zoneout_c, torch::Tensor zoneout_ifo,
                                               double zoneout_rate, std::vector<int64_t> offsets, bool cifg,
                                               bool g_identity, bool h_identity, std::vector<int64_t> running) {
  check_steps(u, "u");
  const int64_t T = u.size(0), B = u.size(1), G = u.size(2), H = hidden_size_of(h0, "h0");
  const Layout L = layout_of(H, G, offsets, cifg, g_identity, h_identity);
  check_dense(h0, "h0", u, {B, H});
  check_dense(c0, "c0", u, {B, H});
  check_matrix(weight_hh_t, "weight_hh_t", u, {H, G});
  check_optional(bias_hh, "bias_hh", u, {G});
  check_peepholes(p_i, p_f, p_o, u, H);
  if (!absent(weight_gg_t)) {
    check_matrix(weight_gg_t, "weight_gg_t", u, {3 * H, 3 * H});
    check_dense(ifo0, "ifo0", u, {B, 3 * H});
  }
  check_running(running, T, B);
  auto gates = step_buffer(u.sizes(), u.options(), running);
  auto h_all = step_buffer({T, B, H}, u.options(), running);
  auto c_all = step_buffer({T, B, H}, u.options(), running);
  auto h = h0.clone(), c = c0.clone();                   // the state, updated in place row-prefix-wise
  const bool has_bias = bias_hh.defined() && bias_hh.numel();
  const bool fgr = weight_gg_t.defined() && weight_gg_t.numel();
  TORCH_CHECK(!fgr || (L.i >= 0 && L.f >= 0 && L.o >= 0 && !cifg), "fgr needs the gates i, f and o");
  auto ifo = fgr ? ifo0.clone() : torch::Tensor();       // [i, f, o]_{t-1} (B, 3H)
  auto rec = fgr ? torch::empty({B, 3 * H}, u.options()) : torch::Tensor();
  const bool masked = recurrent_mask.defined() && recurrent_mask.numel();
  const bool training_zoneout = zoneout_h.defined() && zoneout_h.numel();
  const bool zoned = training_zoneout || zoneout_rate != 0;
  check_recurrent_mask(recurrent_mask, B, H, u);
  check_zoneout_mask(zoneout_h, T, B, H, u, "zoneout_h");
  check_zoneout_mask(zoneout_c, T, B, H, u, "zoneout_c");
  if (fgr) check_zoneout_mask(zoneout_ifo, T, B, 3 * H, u, "zoneout_ifo");
  TORCH_CHECK(!training_zoneout || (zoneout_c.defined() && zoneout_c.numel() &&
                                    (!fgr || (zoneout_ifo.defined() && zoneout_ifo.numel()))),
              "zoneout needs a mask for every state (h, c and, for fgr, ifo)");
  auto h_in = masked ? torch::empty({B, H}, u.options()) : torch::Tensor();          // h_{t-1} r
  auto c_cand = zoned ? step_buffer({T, B, H}, u.options(), running) : torch::empty({0}, u.options());
  auto ifo_all = zoned && fgr ? step_buffer({T, B, 3 * H}, u.options(), running) : torch::empty({0}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "lstm_family_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = running[t];
      auto a = gates[t].narrow(0, 0, n);                 // (n, G)
      if (has_bias) at::add_out(a, u[t].narrow(0, 0, n), bias_hh);
      else a.copy_(u[t].narrow(0, 0, n));
      if (masked) {
        auto h_in_n = h_in.narrow(0, 0, n);
        at::mul_out(h_in_n, h.narrow(0, 0, n), recurrent_mask.narrow(0, 0, n));
        a.addmm_(h_in_n, weight_hh_t);
      } else {
        a.addmm_(h.narrow(0, 0, n), weight_hh_t);
      }
      if (fgr) {
        auto rec_n = rec.narrow(0, 0, n);
        at::mm_out(rec_n, ifo.narrow(0, 0, n), weight_gg_t);
      }
      auto c_t = c_all[t], h_t = h_all[t];
      scalar_t* a_p = a.data_ptr<scalar_t>();
      const scalar_t *pi = maybe<scalar_t>(p_i), *pf = maybe<scalar_t>(p_f), *po = maybe<scalar_t>(p_o);
      scalar_t* rec_p = fgr ? rec.data_ptr<scalar_t>() : nullptr;
      scalar_t* ifo_p = fgr ? ifo.data_ptr<scalar_t>() : nullptr;
      if (zoned) {
        forward_pointwise<scalar_t, true>(
            L, n, a_p, c.data_ptr<scalar_t>(), c_t.data_ptr<scalar_t>(), h_t.data_ptr<scalar_t>(), pi, pf, po,
            rec_p, ifo_p, h.data_ptr<scalar_t>(), c_cand[t].data_ptr<scalar_t>(),
            fgr ? ifo_all[t].data_ptr<scalar_t>() : nullptr, zone_at<scalar_t>(zoneout_h, zoneout_rate, t),
            zone_at<scalar_t>(zoneout_c, zoneout_rate, t), zone_at<scalar_t>(zoneout_ifo, zoneout_rate, t));
      } else {
        const Zone<scalar_t> none{nullptr, scalar_t(0)};
        forward_pointwise<scalar_t, false>(L, n, a_p, c.data_ptr<scalar_t>(), c_t.data_ptr<scalar_t>(),
                                           h_t.data_ptr<scalar_t>(), pi, pf, po, rec_p, ifo_p, nullptr, nullptr,
                                           nullptr, none, none, none);
      }
      h.narrow(0, 0, n).copy_(h_t.narrow(0, 0, n));
      c.narrow(0, 0, n).copy_(c_t.narrow(0, 0, n));
    }
  });
  return {h_all, c_all, gates, h, c, fgr ? ifo : torch::empty({0}, u.options()), c_cand, ifo_all};
}

// The backward loop. grad_h_all (T, B, H) the outputs' gradient; grad_h, grad_c (B, H) the final
// state's. weight_hh (G, H); for fgr weight_gg (3H, 3H) and grad_ifo (B, 3H), else both empty.
// c_all the (zoned) cell states; with zoneout c_cand (T, B, H) the candidates c~ (else empty: c_all
// is both), and the forward's recurrent mask and zoneout masks or rate.
// Returns d_a (T, B, G) (= the gradient of u; zero past each end), the initial state's gradients
// dh0, dc0 (B, H), d_ifo0 (B, 3H; empty unless fgr) and the peepholes' gradients (3, H: rows i, f,
// o; zero for a gate without one), summed step by step in double precision.
std::vector<torch::Tensor> lstm_family_backward(torch::Tensor grad_h_all, torch::Tensor grad_h,
                                                torch::Tensor grad_c, torch::Tensor gates,
                                                torch::Tensor c_all, torch::Tensor c0,
                                                torch::Tensor weight_hh, torch::Tensor p_i,
                                                torch::Tensor p_f, torch::Tensor p_o,
                                                torch::Tensor weight_gg, torch::Tensor grad_ifo,
                                                torch::Tensor c_cand, torch::Tensor recurrent_mask,
                                                torch::Tensor zoneout_h, torch::Tensor zoneout_c,
                                                torch::Tensor zoneout_ifo, double zoneout_rate,
                                                std::vector<int64_t> offsets, bool cifg, bool g_identity,
                                                bool h_identity, std::vector<int64_t> running) {
  check_steps(gates, "gates");
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), H = hidden_size_of(c0, "c0");
  const Layout L = layout_of(H, G, offsets, cifg, g_identity, h_identity);
  check_dense(grad_h_all, "grad_h_all", gates, {T, B, H});
  check_dense(grad_h, "grad_h", gates, {B, H});
  check_dense(grad_c, "grad_c", gates, {B, H});
  check_dense(c_all, "c_all", gates, {T, B, H});
  check_dense(c0, "c0", gates, {B, H});
  check_matrix(weight_hh, "weight_hh", gates, {G, H});
  check_peepholes(p_i, p_f, p_o, gates, H);
  if (!absent(weight_gg)) {
    check_matrix(weight_gg, "weight_gg", gates, {3 * H, 3 * H});
    check_dense(grad_ifo, "grad_ifo", gates, {B, 3 * H});
  }
  check_optional(c_cand, "c_cand", gates, {T, B, H});
  check_running(running, T, B);
  auto d_a = step_buffer(gates.sizes(), gates.options(), running);
  auto dh = grad_h.clone(), dc = grad_c.clone();         // rows not yet started hold the final grads
  auto dh_step = torch::empty({B, H}, gates.options());
  const bool fgr = weight_gg.defined() && weight_gg.numel();
  auto d_ifo = fgr ? grad_ifo.clone() : torch::Tensor(); // the gradient of ifo_t, then of ifo_{t-1}
  // ifo's rows of W_gg by block: i and f are adjacent in the gate stack, o is apart.
  const auto w_if = fgr ? weight_gg.narrow(0, 0, 2 * H) : torch::Tensor();
  const auto w_o = fgr ? weight_gg.narrow(0, 2 * H, H) : torch::Tensor();
  TORCH_CHECK(!fgr || L.f == L.i + H, "fgr expects the gate blocks i, f adjacent");
  const bool masked = recurrent_mask.defined() && recurrent_mask.numel();
  const bool zoned = (zoneout_h.defined() && zoneout_h.numel()) || zoneout_rate != 0;
  check_recurrent_mask(recurrent_mask, B, H, gates);
  check_zoneout_mask(zoneout_h, T, B, H, gates, "zoneout_h");
  check_zoneout_mask(zoneout_c, T, B, H, gates, "zoneout_c");
  if (fgr) check_zoneout_mask(zoneout_ifo, T, B, 3 * H, gates, "zoneout_ifo");
  TORCH_CHECK(!zoned || (c_cand.defined() && c_cand.sizes() == c_all.sizes()),
              "zoneout's backward needs the candidate cell states c_cand (T, B, H)");
  auto dh_rec = masked ? torch::empty({B, H}, gates.options()) : torch::Tensor();    // δa U, before r
  auto dp_step = torch::zeros({3, H}, gates.options());   // one step's peephole gradients
  std::vector<double> dp_sum(3 * H, 0.0);                 // their sum over the steps
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_family_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t n = running[t];
      auto dh_n = dh_step.narrow(0, 0, n);
      at::add_out(dh_n, dh.narrow(0, 0, n), grad_h_all[t].narrow(0, 0, n));
      const torch::Tensor c_prev = t > 0 ? c_all[t - 1] : c0;
      auto d_a_t = d_a[t].narrow(0, 0, n);
      const scalar_t *pi = maybe<scalar_t>(p_i), *pf = maybe<scalar_t>(p_f), *po = maybe<scalar_t>(p_o);
      scalar_t* d_ifo_p = fgr ? d_ifo.data_ptr<scalar_t>() : nullptr;
      if (zoned) {                                       // m dh_t goes to dh (rows :n) as the carry
        backward_pointwise<scalar_t, true>(
            L, n, gates[t].data_ptr<scalar_t>(), c_prev.data_ptr<scalar_t>(), c_cand[t].data_ptr<scalar_t>(),
            dh_n.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(), d_a_t.data_ptr<scalar_t>(), pi, pf, po, d_ifo_p,
            dp_step.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(), zone_at<scalar_t>(zoneout_h, zoneout_rate, t),
            zone_at<scalar_t>(zoneout_c, zoneout_rate, t), zone_at<scalar_t>(zoneout_ifo, zoneout_rate, t));
      } else {
        const Zone<scalar_t> none{nullptr, scalar_t(0)};
        backward_pointwise<scalar_t, false>(
            L, n, gates[t].data_ptr<scalar_t>(), c_prev.data_ptr<scalar_t>(), c_all[t].data_ptr<scalar_t>(),
            dh_n.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(), d_a_t.data_ptr<scalar_t>(), pi, pf, po, d_ifo_p,
            dp_step.data_ptr<scalar_t>(), nullptr, none, none, none);
      }
      scalar_t* dp = dp_step.data_ptr<scalar_t>();
      for (int64_t k = 0; k < 3 * H; ++k) {
        dp_sum[k] += dp[k];
        dp[k] = 0;
      }
      // dh_{t-1} = (δa U) r + m dh_t (each term where its option is on)
      auto dh_prev = dh.narrow(0, 0, n);
      if (masked) {
        auto dh_rec_n = dh_rec.narrow(0, 0, n);
        at::mm_out(dh_rec_n, d_a_t, weight_hh);
        if (zoned) dh_prev.addcmul_(dh_rec_n, recurrent_mask.narrow(0, 0, n));
        else at::mul_out(dh_prev, dh_rec_n, recurrent_mask.narrow(0, 0, n));
      } else if (zoned) {
        dh_prev.addmm_(d_a_t, weight_hh);
      } else {
        at::mm_out(dh_prev, d_a_t, weight_hh);
      }
      if (fgr) {                                         // δifo_{t-1} = [δa_i, δa_f, δa_o] W_gg (+ m δifo_t)
        auto d_ifo_prev = d_ifo.narrow(0, 0, n);
        if (zoned) d_ifo_prev.addmm_(d_a_t.narrow(1, L.i, 2 * H), w_if);
        else at::mm_out(d_ifo_prev, d_a_t.narrow(1, L.i, 2 * H), w_if);
        d_ifo_prev.addmm_(d_a_t.narrow(1, L.o, H), w_o);
      }
    }
  });
  // clone: from_blob only borrows the vector, which dies with this function
  auto dp = torch::from_blob(dp_sum.data(), {3, H}, torch::kFloat64).clone().to(gates.scalar_type());
  return {d_a, dh, dc, fgr ? d_ifo : torch::empty({0}, gates.options()), dp};
}
