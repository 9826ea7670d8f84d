"""Dense peak TFLOP/s of NVIDIA GPUs, for model-FLOPs utilisation (MFU).

Keyed by the exact string `jax.devices()[0].device_kind` reports (the same as `nvidia-smi`'s
name). No substring matching: "NVIDIA H100 PCIe" and "NVIDIA H100 NVL" are slower parts than
the SXM5 "NVIDIA H100 80GB HBM3", and a near-miss must give "peak unknown", not a wrong MFU.

Figures are NVIDIA's datasheets at boost clock, without structured sparsity. Where a datasheet
gives only the with-sparsity figure (marked there with an asterisk), it is halved here, as
NVIDIA's footnote says ("specifications are one-half lower without sparsity"). fp32 is the
CUDA-core rate (what precision="float32", true float32, runs at); tf32 and bf16 are the
Tensor Core rates (precision="tf32"; matmul_dtype="bfloat16" with float32 accumulation).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Peak:
    fp32: float  # TFLOP/s, dense
    tf32: float
    bf16: float
    source: str

    def of(self, precision):
        """The peak for "fp32", "tf32" or "bf16"."""
        return getattr(self, precision)


_HALVED = "datasheet figures with sparsity are halved"
_H100 = f"NVIDIA H100 Tensor Core GPU datasheet, {{}} column; TF32/BF16: {_HALVED}"
_H200 = f"NVIDIA H200 Tensor Core GPU datasheet, {{}} column; TF32/BF16: {_HALVED}"
_A100 = ("NVIDIA A100 Tensor Core GPU datasheet ({}): FP32 19.5, TF32 156, BF16 312 "
         "(the dense figures; 312/624 are with sparsity)")

PEAKS = {
    "NVIDIA H100 80GB HBM3": Peak(67.0, 494.5, 989.5, _H100.format("H100 SXM")),
    "NVIDIA H100 PCIe": Peak(51.0, 378.0, 756.5, _H100.format("H100 PCIe")),
    "NVIDIA H100 NVL": Peak(60.0, 417.5, 835.5, _H100.format("H100 NVL (per GPU)")),
    "NVIDIA H200": Peak(67.0, 494.5, 989.5, _H200.format("H200 SXM")),
    # The NVL card's name as reported is assumed from the H100 NVL pattern (unverified).
    "NVIDIA H200 NVL": Peak(60.0, 417.5, 835.5, _H200.format("H200 NVL")),
    "NVIDIA A100-SXM4-80GB": Peak(19.5, 156.0, 312.0, _A100.format("A100 80GB SXM")),
    "NVIDIA A100-SXM4-40GB": Peak(19.5, 156.0, 312.0, _A100.format("A100 40GB SXM")),
    "NVIDIA A100-PCIE-40GB": Peak(19.5, 156.0, 312.0, _A100.format("A100 40GB PCIe")),
    "NVIDIA A100 80GB PCIe": Peak(19.5, 156.0, 312.0, _A100.format("A100 80GB PCIe")),
    "NVIDIA L4": Peak(30.3, 60.0, 121.0,
                      f"NVIDIA L4 Tensor Core GPU datasheet: FP32 30.3, TF32 120*, BF16 242* "
                      f"(* with sparsity); {_HALVED}"),
}


def lookup(device_kind):
    """The `Peak` of this exact device kind, or None (then report TFLOP/s, no MFU)."""
    return PEAKS.get(device_kind)
