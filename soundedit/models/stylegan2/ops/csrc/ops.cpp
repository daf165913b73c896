// Python bindings of the soundedit StyleGAN2 ops (the kernels live in ops.cu).
#include <torch/extension.h>

#include "ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "soundedit StyleGAN2 ops: upfirdn2d, fused bias + leaky ReLU, modulated weights (CUDA; CPU loop for tests)";
  m.def("upfirdn2d", &sg2ops::upfirdn2d, "upsample, FIR-filter, downsample (N, C, H, W)", py::arg("x"),
        py::arg("kernel"), py::arg("up"), py::arg("down"), py::arg("px0"), py::arg("px1"), py::arg("py0"),
        py::arg("py1"), py::arg("flip_kernel") = false);
  m.def("bias_act", &sg2ops::bias_act, "(x [+ strength * noise] + b) * (... > 0 ? pos_gain : neg_gain)", py::arg("x"),
        py::arg("bias"), py::arg("noise"), py::arg("strength"), py::arg("pos_gain"), py::arg("neg_gain"));
  m.def("bias_act_grad", &sg2ops::bias_act_grad, "gradient of bias_act w.r.t. x + b, from its output",
        py::arg("grad"), py::arg("y"), py::arg("pos_gain"), py::arg("neg_gain"));
  m.def("modulated_weight", &sg2ops::modulated_weight, "per-sample modulated (and demodulated) conv weights",
        py::arg("weight"), py::arg("styles"), py::arg("scale"), py::arg("demodulate"), py::arg("eps"));
  m.def("modulated_weight_grad", &sg2ops::modulated_weight_grad, "gradient of modulated_weight w.r.t. the styles",
        py::arg("grad"), py::arg("weight"), py::arg("styles"), py::arg("d"), py::arg("scale"), py::arg("demodulate"));
}
