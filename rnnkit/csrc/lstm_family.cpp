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
template <typename T>
void forward_pointwise(const Layout& L, int64_t n, T* gates, const T* c_prev, T* c, T* h,
                       const T* p_i, const T* p_f, const T* p_o, const T* rec, T* ifo) {
  const int64_t H = L.H, G = L.G, K = Vec<T>::size();
  const Vec<T> one(T(1));
  for (int64_t r = 0; r < n; ++r) {
    T* a = gates + r * G;
    const T* cp = c_prev + r * H;
    const T* rec_r = rec ? rec + r * 3 * H : nullptr;
    T* ifo_r = ifo ? ifo + r * 3 * H : nullptr;
    for (int64_t j = 0; j < H; j += K) {
      const int64_t m = std::min(K, H - j);
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
        store(i, ifo_r + j, m);
        store(f, ifo_r + H + j, m);
        store(o, ifo_r + 2 * H + j, m);
      }
      const Vec<T> s = L.h_identity ? c_new : c_new.tanh();
      store(c_new, c + r * H + j, m);
      store(o * s, h + r * H + j, m);
    }
  }
}

// One step of the delta recursion for rows [0, n): from dh, dc (dc is updated in place to
// dc_{t-1}) and the saved activations, the pre-activation gradients d_a (n, G). For fgr, `d_ifo`
// (n, 3H) is the gradient reaching the state ifo_t = [i, f, o]_t from step t + 1; else null.
// The peepholes' gradients of the step, Σ_rows δa_i c_{t-1}, δa_f c_{t-1}, δa_o c_t, are added to
// dp (3, H: rows i, f, o), for the gates that have a peephole.
template <typename T>
void backward_pointwise(const Layout& L, int64_t n, const T* gates, const T* c_prev, const T* c,
                        const T* dh, T* dc, T* d_a, const T* p_i, const T* p_f, const T* p_o,
                        const T* d_ifo, T* dp) {
  const int64_t H = L.H, G = L.G, K = Vec<T>::size();
  const Vec<T> one(T(1)), zero(T(0));
  for (int64_t r = 0; r < n; ++r) {
    const T* act = gates + r * G;
    T* da = d_a + r * G;
    const T* d_ifo_r = d_ifo ? d_ifo + r * 3 * H : nullptr;
    for (int64_t j = 0; j < H; j += K) {
      const int64_t m = std::min(K, H - j), row = r * H + j;
      const Vec<T> i = L.i >= 0 ? load(act + L.i + j, m) : one;
      const Vec<T> g = load(act + L.g + j, m);
      const Vec<T> o = L.o >= 0 ? load(act + L.o + j, m) : one;
      const Vec<T> f = L.cifg ? one - i : (L.f >= 0 ? load(act + L.f + j, m) : one);
      const Vec<T> c_new = load(c + row, m), c_old = load(c_prev + row, m), dh_j = load(dh + row, m);
      const Vec<T> s = L.h_identity ? c_new : c_new.tanh();
      Vec<T> dc_j = load(dc + row, m) + dh_j * o * (L.h_identity ? one : one - s * s);
      if (L.o >= 0) {
        const Vec<T> d_o = dh_j * s + (d_ifo_r ? load(d_ifo_r + 2 * H + j, m) : zero);
        const Vec<T> da_o = d_o * o * (one - o);
        store(da_o, da + L.o + j, m);
        if (p_o) {
          dc_j = dc_j + da_o * load(p_o + j, m);
          store(load(dp + 2 * H + j, m) + da_o * c_new, dp + 2 * H + j, m);
        }
      }
      const Vec<T> dg = L.i >= 0 ? dc_j * i : dc_j;
      store(L.g_identity ? dg : dg * (one - g * g), da + L.g + j, m);
      const Vec<T> df = dc_j * c_old + (d_ifo_r ? load(d_ifo_r + H + j, m) : zero);
      Vec<T> dc_prev = dc_j * f;
      if (L.i >= 0) {
        const Vec<T> di_own = dc_j * g + (d_ifo_r ? load(d_ifo_r + j, m) : zero);
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
      store(dc_prev, dc + row, m);
    }
  }
}

Layout layout_of(int64_t H, int64_t G, const std::vector<int64_t>& offsets, bool cifg, bool g_identity,
                 bool h_identity) {
  TORCH_CHECK(offsets.size() == 4, "offsets must list the blocks of i, f, g, o");
  auto at = [&](int64_t k) { return offsets[k] < 0 ? int64_t(-1) : offsets[k] * H; };
  return Layout{H, G, at(0), at(1), at(2), at(3), cifg, g_identity, h_identity};
}

}  // namespace

// u (T, B, G) pre-activations from the input; h0, c0 (B, H); weight_hh_t (H, G) = U^T; bias_hh (G)
// or empty; for fgr weight_gg_t (3H, 3H) = W_gg^T and ifo0 (B, 3H), else both empty. Returns h_all,
// c_all (T, B, H) (zero past each end), gates (T, B, G) activations, the final h, c (B, H) and the
// final ifo (B, 3H; empty unless fgr).
std::vector<torch::Tensor> lstm_family_forward(torch::Tensor u, torch::Tensor h0, torch::Tensor c0,
                                               torch::Tensor weight_hh_t, torch::Tensor bias_hh,
                                               torch::Tensor p_i, torch::Tensor p_f, torch::Tensor p_o,
                                               torch::Tensor weight_gg_t, torch::Tensor ifo0,
                                               std::vector<int64_t> offsets, bool cifg, bool g_identity,
                                               bool h_identity, std::vector<int64_t> running) {
  const int64_t T = u.size(0), B = u.size(1), G = u.size(2), H = h0.size(1);
  const Layout L = layout_of(H, G, offsets, cifg, g_identity, h_identity);
  TORCH_CHECK(static_cast<int64_t>(running.size()) == T, "running must give one count per step");
  auto gates = step_buffer(u.sizes(), u.options(), running);
  auto h_all = step_buffer({T, B, H}, u.options(), running);
  auto c_all = step_buffer({T, B, H}, u.options(), running);
  auto h = h0.clone(), c = c0.clone();                   // the state, updated in place row-prefix-wise
  const bool has_bias = bias_hh.defined() && bias_hh.numel();
  const bool fgr = weight_gg_t.defined() && weight_gg_t.numel();
  TORCH_CHECK(!fgr || (L.i >= 0 && L.f >= 0 && L.o >= 0 && !cifg), "fgr needs the gates i, f and o");
  auto ifo = fgr ? ifo0.clone() : torch::Tensor();       // [i, f, o]_{t-1} (B, 3H)
  auto rec = fgr ? torch::empty({B, 3 * H}, u.options()) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "lstm_family_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = running[t];
      auto a = gates[t].narrow(0, 0, n);                 // (n, G)
      if (has_bias) at::add_out(a, u[t].narrow(0, 0, n), bias_hh);
      else a.copy_(u[t].narrow(0, 0, n));
      a.addmm_(h.narrow(0, 0, n), weight_hh_t);
      if (fgr) {
        auto rec_n = rec.narrow(0, 0, n);
        at::mm_out(rec_n, ifo.narrow(0, 0, n), weight_gg_t);
      }
      auto c_t = c_all[t], h_t = h_all[t];
      forward_pointwise<scalar_t>(L, n, a.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
                                  c_t.data_ptr<scalar_t>(), h_t.data_ptr<scalar_t>(), maybe<scalar_t>(p_i),
                                  maybe<scalar_t>(p_f), maybe<scalar_t>(p_o),
                                  fgr ? rec.data_ptr<scalar_t>() : nullptr,
                                  fgr ? ifo.data_ptr<scalar_t>() : nullptr);
      h.narrow(0, 0, n).copy_(h_t.narrow(0, 0, n));
      c.narrow(0, 0, n).copy_(c_t.narrow(0, 0, n));
    }
  });
  return {h_all, c_all, gates, h, c, fgr ? ifo : torch::empty({0}, u.options())};
}

// The backward loop. grad_h_all (T, B, H) the outputs' gradient; grad_h, grad_c (B, H) the final
// state's. weight_hh (G, H); for fgr weight_gg (3H, 3H) and grad_ifo (B, 3H), else both empty.
// Returns d_a (T, B, G) (= the gradient of u; zero past each end), the initial state's gradients
// dh0, dc0 (B, H), d_ifo0 (B, 3H; empty unless fgr) and the peepholes' gradients (3, H: rows i, f,
// o; zero for a gate without one), summed step by step in double precision.
std::vector<torch::Tensor> lstm_family_backward(torch::Tensor grad_h_all, torch::Tensor grad_h,
                                                torch::Tensor grad_c, torch::Tensor gates,
                                                torch::Tensor c_all, torch::Tensor c0,
                                                torch::Tensor weight_hh, torch::Tensor p_i,
                                                torch::Tensor p_f, torch::Tensor p_o,
                                                torch::Tensor weight_gg, torch::Tensor grad_ifo,
                                                std::vector<int64_t> offsets, bool cifg, bool g_identity,
                                                bool h_identity, std::vector<int64_t> running) {
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), H = c0.size(1);
  const Layout L = layout_of(H, G, offsets, cifg, g_identity, h_identity);
  auto d_a = step_buffer(gates.sizes(), gates.options(), running);
  auto dh = grad_h.clone(), dc = grad_c.clone();         // rows not yet started hold the final grads
  auto dh_step = torch::empty({B, H}, gates.options());
  const bool fgr = weight_gg.defined() && weight_gg.numel();
  auto d_ifo = fgr ? grad_ifo.clone() : torch::Tensor(); // the gradient of ifo_t, then of ifo_{t-1}
  // ifo's rows of W_gg by block: i and f are adjacent in the gate stack, o is apart.
  const auto w_if = fgr ? weight_gg.narrow(0, 0, 2 * H) : torch::Tensor();
  const auto w_o = fgr ? weight_gg.narrow(0, 2 * H, H) : torch::Tensor();
  TORCH_CHECK(!fgr || L.f == L.i + H, "fgr expects the gate blocks i, f adjacent");
  auto dp_step = torch::zeros({3, H}, gates.options());   // one step's peephole gradients
  std::vector<double> dp_sum(3 * H, 0.0);                 // their sum over the steps
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_family_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t n = running[t];
      auto dh_n = dh_step.narrow(0, 0, n);
      at::add_out(dh_n, dh.narrow(0, 0, n), grad_h_all[t].narrow(0, 0, n));
      const torch::Tensor c_prev = t > 0 ? c_all[t - 1] : c0;
      auto d_a_t = d_a[t].narrow(0, 0, n);
      backward_pointwise<scalar_t>(L, n, gates[t].data_ptr<scalar_t>(), c_prev.data_ptr<scalar_t>(),
                                   c_all[t].data_ptr<scalar_t>(), dh_n.data_ptr<scalar_t>(),
                                   dc.data_ptr<scalar_t>(), d_a_t.data_ptr<scalar_t>(), maybe<scalar_t>(p_i),
                                   maybe<scalar_t>(p_f), maybe<scalar_t>(p_o),
                                   fgr ? d_ifo.data_ptr<scalar_t>() : nullptr, dp_step.data_ptr<scalar_t>());
      scalar_t* dp = dp_step.data_ptr<scalar_t>();
      for (int64_t k = 0; k < 3 * H; ++k) {
        dp_sum[k] += dp[k];
        dp[k] = 0;
      }
      auto dh_prev = dh.narrow(0, 0, n);
      at::mm_out(dh_prev, d_a_t, weight_hh);
      if (fgr) {                                         // δifo_{t-1} = [δa_i, δa_f, δa_o] W_gg
        auto d_ifo_prev = d_ifo.narrow(0, 0, n);
        at::mm_out(d_ifo_prev, d_a_t.narrow(1, L.i, 2 * H), w_if);
        d_ifo_prev.addmm_(d_a_t.narrow(1, L.o, H), w_o);
      }
    }
  });
  // clone: from_blob only borrows the vector, which dies with this function
  auto dp = torch::from_blob(dp_sum.data(), {3, H}, torch::kFloat64).clone().to(gates.scalar_type());
  return {d_a, dh, dc, fgr ? d_ifo : torch::empty({0}, gates.options()), dp};
}
