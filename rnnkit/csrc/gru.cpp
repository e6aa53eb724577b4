// The GRU's time loop, forward and backward, in one C++ call each (both variants of
// rnnkit/cells/gru.py; gates stacked r, z, n as in torch.nn.GRU):
//   r = sig(x_r + U_r h + b_hr),  z = sig(x_z + U_z h + b_hz)
//   standard: n = tanh(x_n + r (U_n h + b_hn))        original (Cho et al. 2014): n = tanh(x_n + U_n (r h) + b_hn)
//   h_t = (1 - z) n + z h_{t-1}
// Per step: the recurrent product(s) through ATen (one for standard, two for original, whose second
// product needs r first) and one fused vectorised pass for the gates and the new state; backwards,
// the delta recursion of rnnkit/cells/gru.py's step_backward, fused the same way. The weight
// gradients are formed afterwards in Python as one product over all rows. Lengths as in
// lstm_family.cpp: rows sorted longest first, step t touches its first running[t] rows.
// Recurrent dropout (Gal & Ghahramani 2016): h_in = h_{t-1} m_r with one mask m_r (B, H) per
// sequence replaces h_{t-1} in every recurrent product (original: in U_rz h and in r h), not in
// z h_{t-1}. Zoneout (Krueger et al. 2017): h_t = m h_{t-1} + (1 - m) h~_t, with h~_t the step's
// new value above (vec_math.h's Zone).
#include "checks.h"
#include "loops.h"
#include "vec_math.h"

namespace {

using namespace rnnkit;   // Vec, load, store, sigmoid, maybe (vec_math.h)

// r and z from the input part x (row stride 3H) and the recurrent part rec (row stride rec_stride).
template <typename T>
inline void gates_rz(const T* x, const T* rec, int64_t j, int64_t m, int64_t H, Vec<T>& r, Vec<T>& z) {
  r = sigmoid(load(x + j, m) + load(rec + j, m));
  z = sigmoid(load(x + H + j, m) + load(rec + H + j, m));
}

}  // namespace

// u (T, B, 3H) the input part with b_ih; h0 (B, H); weight_hh_t (H, 3H) = U^T; bias_hh (3H) or empty;
// recurrent_mask (B, H) or empty; zoneout_h (T, B, H) the keep-old indicators of training, or empty
// with zoneout_rate the evaluation rate (0: no zoneout).
// Returns h_all (T, B, H) (the zoned states, zero past each end), gates (T, B, 3H) = r, z, n, saved
// (T, B, H) = the standard variant's U_n h_in + b_hn or the original's r h_in, and the final state (B, H).
std::vector<torch::Tensor> gru_forward(torch::Tensor u, torch::Tensor h0, torch::Tensor weight_hh_t,
                                       torch::Tensor bias_hh, torch::Tensor recurrent_mask, torch::Tensor zoneout_h,
                                       double zoneout_rate, bool original, std::vector<int64_t> running) {
  check_steps(u, "u");
  const int64_t T = u.size(0), B = u.size(1), H = hidden_size_of(h0, "h0"), G = 3 * H;
  TORCH_CHECK(u.size(2) == G, "u must have shape (T, B, 3H) = (", T, ", ", B, ", ", G, "), got ", u.sizes());
  check_dense(h0, "h0", u, {B, H});
  check_matrix(weight_hh_t, "weight_hh_t", u, {H, G});
  check_optional(bias_hh, "bias_hh", u, {G});
  check_running(running, T, B);
  auto gates = step_buffer(u.sizes(), u.options(), running);
  auto saved = step_buffer({T, B, H}, u.options(), running);
  auto h_all = step_buffer({T, B, H}, u.options(), running);
  auto h = h0.clone();
  auto rec = torch::empty({B, original ? 2 * H : G}, u.options());
  auto a_n = torch::empty({B, H}, u.options());
  const bool has_bias = bias_hh.defined() && bias_hh.numel();
  const bool masked = recurrent_mask.defined() && recurrent_mask.numel();
  const bool zoned = (zoneout_h.defined() && zoneout_h.numel()) || zoneout_rate != 0;
  check_recurrent_mask(recurrent_mask, B, H, u);
  check_zoneout_mask(zoneout_h, T, B, H, u, "zoneout_h");
  auto h_in = masked ? torch::empty({B, H}, u.options()) : h;   // what the recurrent products see
  auto w_rz = weight_hh_t.narrow(1, 0, 2 * H), w_n = weight_hh_t.narrow(1, 2 * H, H);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "gru_forward", [&] {
    const int64_t K = Vec<scalar_t>::size();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = running[t];
      auto h_n = h_in.narrow(0, 0, n), rec_n = rec.narrow(0, 0, n);
      if (masked) at::mul_out(h_n, h.narrow(0, 0, n), recurrent_mask.narrow(0, 0, n));
      if (original) {
        if (has_bias) at::addmm_out(rec_n, bias_hh.narrow(0, 0, 2 * H), h_n, w_rz);
        else at::mm_out(rec_n, h_n, w_rz);
      } else {
        if (has_bias) at::addmm_out(rec_n, bias_hh, h_n, weight_hh_t);
        else at::mm_out(rec_n, h_n, weight_hh_t);
      }
      const int64_t rec_stride = rec.size(1);
      scalar_t* hp = h.data_ptr<scalar_t>();
      const scalar_t* hin = h_in.data_ptr<scalar_t>();
      const scalar_t* x = u[t].data_ptr<scalar_t>();
      scalar_t* act = gates[t].data_ptr<scalar_t>();
      scalar_t* sv = saved[t].data_ptr<scalar_t>();
      const scalar_t* rc = rec.data_ptr<scalar_t>();
      if (original) {                                   // r, z and r h_in; then U_n (r h_in)
        for (int64_t b = 0; b < n; ++b) {
          for (int64_t j = 0; j < H; j += K) {
            const int64_t m = std::min(K, H - j);
            Vec<scalar_t> r, z;
            gates_rz(x + b * G, rc + b * rec_stride, j, m, H, r, z);
            store(r, act + b * G + j, m);
            store(z, act + b * G + H + j, m);
            store(r * load(hin + b * H + j, m), sv + b * H + j, m);
          }
        }
        auto a_n_n = a_n.narrow(0, 0, n), rh = saved[t].narrow(0, 0, n);
        if (has_bias) at::addmm_out(a_n_n, bias_hh.narrow(0, 2 * H, H), rh, w_n);
        else at::mm_out(a_n_n, rh, w_n);
      }
      const scalar_t* an = a_n.data_ptr<scalar_t>();
      scalar_t* out = h_all[t].data_ptr<scalar_t>();
      const Zone<scalar_t> zone = zone_at<scalar_t>(zoneout_h, zoneout_rate, t);
      for (int64_t b = 0; b < n; ++b) {
        for (int64_t j = 0; j < H; j += K) {
          const int64_t m = std::min(K, H - j);
          Vec<scalar_t> r, z, pre;
          if (original) {
            z = load(act + b * G + H + j, m);
            pre = load(x + b * G + 2 * H + j, m) + load(an + b * H + j, m);
          } else {
            gates_rz(x + b * G, rc + b * rec_stride, j, m, H, r, z);
            const Vec<scalar_t> hn = load(rc + b * rec_stride + 2 * H + j, m);
            store(r, act + b * G + j, m);
            store(z, act + b * G + H + j, m);
            store(hn, sv + b * H + j, m);
            pre = load(x + b * G + 2 * H + j, m) + r * hn;
          }
          const Vec<scalar_t> cand = pre.tanh();
          const Vec<scalar_t> h_old = load(hp + b * H + j, m);
          Vec<scalar_t> h_new = cand + z * (h_old - cand);
          if (zoned) h_new = zone.mix(h_old, h_new, b * H + j, m);
          store(cand, act + b * G + 2 * H + j, m);
          store(h_new, out + b * H + j, m);
          store(h_new, hp + b * H + j, m);
        }
      }
    }
  });
  return {h_all, gates, saved, h};
}

// grad_h_all (T, B, H), grad_h (B, H) the final state's gradient; weight_hh (3H, H); the forward's
// recurrent mask and zoneout mask or rate. Returns d_u (T, B, 3H) (the gradient of u), d_rec
// (T, B, 3H): the gradient of U h_in + b_hh's rows (standard: [dr, dz, dn r]; original: [dr, dz] of
// U_rz h_in + b and dn of U_n (r h_in) + b), and dh0 (B, H).
std::vector<torch::Tensor> gru_backward(torch::Tensor grad_h_all, torch::Tensor grad_h, torch::Tensor gates,
                                        torch::Tensor saved, torch::Tensor h_all, torch::Tensor h0,
                                        torch::Tensor weight_hh, torch::Tensor recurrent_mask,
                                        torch::Tensor zoneout_h, double zoneout_rate, bool original,
                                        std::vector<int64_t> running) {
  check_steps(gates, "gates");
  const int64_t T = gates.size(0), B = gates.size(1), H = hidden_size_of(h0, "h0"), G = 3 * H;
  TORCH_CHECK(gates.size(2) == G, "gates must have shape (T, B, 3H) = (", T, ", ", B, ", ", G, "), got ",
              gates.sizes());
  check_dense(grad_h_all, "grad_h_all", gates, {T, B, H});
  check_dense(grad_h, "grad_h", gates, {B, H});
  check_dense(saved, "saved", gates, {T, B, H});
  check_dense(h_all, "h_all", gates, {T, B, H});
  check_dense(h0, "h0", gates, {B, H});
  check_matrix(weight_hh, "weight_hh", gates, {G, H});
  check_running(running, T, B);
  auto d_u = step_buffer(gates.sizes(), gates.options(), running);
  auto d_rec = step_buffer(gates.sizes(), gates.options(), running);
  auto dh = grad_h.clone();                              // rows not yet started hold the final grads
  auto dh_in = torch::empty({B, H}, gates.options());
  auto d_rh = torch::empty({B, H}, gates.options());     // original: δ(r h_in); masked: δh_in
  auto w_rz = weight_hh.narrow(0, 0, 2 * H), w_n = weight_hh.narrow(0, 2 * H, H);
  const bool masked = recurrent_mask.defined() && recurrent_mask.numel();
  const bool zoned = (zoneout_h.defined() && zoneout_h.numel()) || zoneout_rate != 0;
  check_recurrent_mask(recurrent_mask, B, H, gates);
  check_zoneout_mask(zoneout_h, T, B, H, gates, "zoneout_h");
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_backward", [&] {
    const int64_t K = Vec<scalar_t>::size();
    const Vec<scalar_t> one(scalar_t(1));
    const scalar_t* mask = masked ? recurrent_mask.data_ptr<scalar_t>() : nullptr;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t n = running[t];
      auto dh_in_n = dh_in.narrow(0, 0, n);
      at::add_out(dh_in_n, dh.narrow(0, 0, n), grad_h_all[t].narrow(0, 0, n));
      const scalar_t* act = gates[t].data_ptr<scalar_t>();
      const scalar_t* sv = saved[t].data_ptr<scalar_t>();
      const scalar_t* hp = (t > 0 ? h_all[t - 1] : h0).data_ptr<scalar_t>();
      const scalar_t* g = dh_in.data_ptr<scalar_t>();
      scalar_t* du = d_u[t].data_ptr<scalar_t>();
      scalar_t* dr = d_rec[t].data_ptr<scalar_t>();
      scalar_t* dhp = dh.data_ptr<scalar_t>();
      const Zone<scalar_t> zone = zone_at<scalar_t>(zoneout_h, zoneout_rate, t);
      // The gradient of h~_t ((1 - m) dh_t) and what zoneout carries to h_{t-1} (m dh_t).
      auto own_and_carry = [&](int64_t row, int64_t m, Vec<scalar_t>& own, Vec<scalar_t>& carry) {
        own = load(g + row, m);
        if (zoned) {
          const Vec<scalar_t> keep = zone.weight(row, m);
          carry = keep * own;
          own = (one - keep) * own;
        }
      };
      for (int64_t b = 0; b < n; ++b) {                // dn, dz (and, standard, dr and dh z)
        for (int64_t j = 0; j < H; j += K) {
          const int64_t m = std::min(K, H - j), row = b * H + j;
          const Vec<scalar_t> r = load(act + b * G + j, m), z = load(act + b * G + H + j, m);
          const Vec<scalar_t> cand = load(act + b * G + 2 * H + j, m);
          Vec<scalar_t> dh_j, carry(scalar_t(0));
          own_and_carry(row, m, dh_j, carry);
          const Vec<scalar_t> h_prev = load(hp + row, m);
          const Vec<scalar_t> d_n = dh_j * (one - z) * (one - cand * cand);
          const Vec<scalar_t> d_z = dh_j * (h_prev - cand) * z * (one - z);
          store(d_z, du + b * G + H + j, m);
          store(d_z, dr + b * G + H + j, m);
          store(d_n, du + b * G + 2 * H + j, m);
          if (original) {
            store(d_n, dr + b * G + 2 * H + j, m);
          } else {
            const Vec<scalar_t> d_r = d_n * load(sv + row, m) * r * (one - r);
            store(d_r, du + b * G + j, m);
            store(d_r, dr + b * G + j, m);
            store(d_n * r, dr + b * G + 2 * H + j, m);
            store(zoned ? dh_j * z + carry : dh_j * z, dhp + row, m);
          }
        }
      }
      auto dh_n = dh.narrow(0, 0, n);
      if (original) {                                   // through r h_in: dr, and dh z + d(rh) r
        auto d_rh_n = d_rh.narrow(0, 0, n);
        at::mm_out(d_rh_n, d_rec[t].narrow(0, 0, n).narrow(1, 2 * H, H), w_n);
        scalar_t* drh = d_rh.data_ptr<scalar_t>();
        for (int64_t b = 0; b < n; ++b) {
          for (int64_t j = 0; j < H; j += K) {
            const int64_t m = std::min(K, H - j), row = b * H + j;
            const Vec<scalar_t> r = load(act + b * G + j, m), z = load(act + b * G + H + j, m);
            const Vec<scalar_t> d_rh_j = load(drh + row, m);
            const Vec<scalar_t> h_prev_in = mask ? load(hp + row, m) * load(mask + row, m) : load(hp + row, m);
            const Vec<scalar_t> d_r = d_rh_j * h_prev_in * r * (one - r);
            store(d_r, du + b * G + j, m);
            store(d_r, dr + b * G + j, m);
            Vec<scalar_t> dh_j, carry(scalar_t(0));
            own_and_carry(row, m, dh_j, carry);
            Vec<scalar_t> direct = dh_j * z;                // the paths of h_{t-1} that skip h_in
            if (zoned) direct = direct + carry;
            if (mask) {                                 // δh_in = δ(r h_in) r, completed below
              store(d_rh_j * r, drh + row, m);
              store(direct, dhp + row, m);
            } else {
              store(direct + d_rh_j * r, dhp + row, m);
            }
          }
        }
        if (masked) {                                  // δh_{t-1} += (δ(rh) r + δ[r, z] U_rz) m_r
          d_rh_n.addmm_(d_rec[t].narrow(0, 0, n).narrow(1, 0, 2 * H), w_rz);
          dh_n.addcmul_(d_rh_n, recurrent_mask.narrow(0, 0, n));
        } else {
          dh_n.addmm_(d_rec[t].narrow(0, 0, n).narrow(1, 0, 2 * H), w_rz);
        }
      } else if (masked) {                             // δh_{t-1} += (δrec U) m_r
        auto d_rh_n = d_rh.narrow(0, 0, n);
        at::mm_out(d_rh_n, d_rec[t].narrow(0, 0, n), weight_hh);
        dh_n.addcmul_(d_rh_n, recurrent_mask.narrow(0, 0, n));
      } else {
        dh_n.addmm_(d_rec[t].narrow(0, 0, n), weight_hh);
      }
    }
  });
  return {d_u, d_rec, dh};
}
