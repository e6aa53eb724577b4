#pragma once
// The compiled time loops, one pair (forward, backward) per cell family; bound in module.cpp.
#include <torch/extension.h>

#include <vector>

// Optional tensors are passed empty when absent. recurrent_mask (B, H_in): variational dropout on
// the state entering the recurrent product; zoneout_* (T, B, S): each state's keep-old indicators
// in training, or empty with zoneout_rate the evaluation rate (0: no zoneout).
std::vector<torch::Tensor> lstm_family_forward(torch::Tensor u, torch::Tensor h0, torch::Tensor c0,
                                               torch::Tensor weight_hh_t, torch::Tensor bias_hh,
                                               torch::Tensor p_i, torch::Tensor p_f, torch::Tensor p_o,
                                               torch::Tensor weight_gg_t, torch::Tensor ifo0,
                                               torch::Tensor recurrent_mask, torch::Tensor zoneout_h,
                                               torch::Tensor zoneout_c, torch::Tensor zoneout_ifo,
                                               double zoneout_rate, std::vector<int64_t> offsets, bool cifg,
                                               bool g_identity, bool h_identity, std::vector<int64_t> running);
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
                                                bool h_identity, std::vector<int64_t> running);
std::vector<torch::Tensor> gru_forward(torch::Tensor u, torch::Tensor h0, torch::Tensor weight_hh_t,
                                       torch::Tensor bias_hh, torch::Tensor recurrent_mask, torch::Tensor zoneout_h,
                                       double zoneout_rate, bool original, std::vector<int64_t> running);
std::vector<torch::Tensor> gru_backward(torch::Tensor grad_h_all, torch::Tensor grad_h, torch::Tensor gates,
                                        torch::Tensor saved, torch::Tensor h_all, torch::Tensor h0,
                                        torch::Tensor weight_hh, torch::Tensor recurrent_mask,
                                        torch::Tensor zoneout_h, double zoneout_rate, bool original,
                                        std::vector<int64_t> running);
torch::Tensor minimal_scan_forward(torch::Tensor u, torch::Tensor h0, torch::Tensor lengths, bool lstm);
std::vector<torch::Tensor> minimal_scan_backward(torch::Tensor u, torch::Tensor h_all, torch::Tensor h0,
                                                 torch::Tensor grad_h, torch::Tensor lengths, bool lstm);
