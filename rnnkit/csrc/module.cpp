// The Python module rnnkit._fused: the compiled loops of loops.h (used by rnnkit/engine/fused.py).
#include "loops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lstm_family_forward", &lstm_family_forward, "LSTM-family time loop, forward");
  m.def("lstm_family_backward", &lstm_family_backward, "LSTM-family time loop, backward");
  m.def("gru_forward", &gru_forward, "GRU time loop (standard or original), forward");
  m.def("gru_backward", &gru_backward, "GRU time loop (standard or original), backward");
  m.def("minimal_scan_forward", &minimal_scan_forward, "minGRU / minLSTM coefficients and scan, forward");
  m.def("minimal_scan_backward", &minimal_scan_backward, "minGRU / minLSTM coefficients and scan, backward");
}
