#!/usr/bin/python3
"""PyTorch reference for editkit's WaNet trigger (unlearn/trigger.go).

Follows WaNet's reference code (VinAIResearch/Warping-based_Backdoor_Attack-release,
train.py): a control grid ins [1, 2, k, k], upsampled by F.interpolate(mode="bicubic",
align_corners=True), permuted to [1, H, W, 2]; the identity grid from torch.linspace(-1, 1)
and torch.meshgrid; grid = clamp(identity + s * noise / H, -1, 1); F.grid_sample(image,
grid, align_corners=True). Computed in float64 and stored as float32 in
unlearn/testdata/wanet.safetensors:

  ins      [2, k, k]       the control grid (random, fixed seed)
  noise    [H, W, 2]       the upsampled grid (square case)
  noise_nonsquare [H2, W2, 2]  the same upsampled to H2 x W2 (bicubic, align_corners)
  image    [H, W, 3]       a random uint8 image, as float
  warped   [H, W, 3]       grid_sample of the image at the grid with s = 0.5, before rounding

Run: /usr/bin/python3 tools/torchref/wanet.py   (Debian's python3-torch)
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchref import save_safetensors  # noqa: E402

K, H, H2, W2, S = 4, 12, 10, 14, 0.5


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ins = torch.rand(1, 2, K, K, dtype=torch.float64) * 2 - 1
    ins = ins / torch.mean(torch.abs(ins))
    noise = F.interpolate(ins, size=H, mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    noise2 = F.interpolate(ins, size=(H2, W2), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    array1d = torch.linspace(-1, 1, steps=H, dtype=torch.float64)
    x, y = torch.meshgrid(array1d, array1d, indexing="ij")
    identity = torch.stack((y, x), 2)[None, ...]
    grid = torch.clamp(identity + S * noise / H, -1, 1)
    image = torch.randint(0, 256, (1, 3, H, H)).to(torch.float64)
    warped = F.grid_sample(image, grid, align_corners=True)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "unlearn", "testdata", "wanet.safetensors")
    save_safetensors(os.path.normpath(out), {
        "ins": ins[0],
        "noise": noise[0],
        "noise_nonsquare": noise2[0],
        "image": image[0].permute(1, 2, 0),
        "warped": warped[0].permute(1, 2, 0),
    }, {"k": str(K), "s": str(S), "torch": torch.__version__})
    print("wrote", os.path.normpath(out))


if __name__ == "__main__":
    main()
