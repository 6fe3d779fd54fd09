#!/usr/bin/env python3
"""Regenerates the committed seed corpus under fuzz/seeds/ (run from the repository root).

Needs Python 3 with torch (for the two .pth formats) and Pillow (for the images). The
weights seeds are shrunk from tests/fixtures: one residual block and 1 filter instead of
9 blocks and 8, so a seed is a few KB and a fuzz iteration that loads it is fast.
"""
import io
import json
import os
import struct
import zipfile

import torch
from PIL import Image

ROOT = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(ROOT, "..", "tests", "fixtures")
SEEDS = os.path.join(ROOT, "seeds")


def out(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    body = b[8 + n :]
    sd = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        t = torch.frombuffer(bytearray(body[s:e]), dtype=torch.float32)
        sd[k] = t.reshape(v["shape"]).clone()
    return sd


def write_safetensors(sd, metadata=None):
    names = sorted(sd)
    header = {}
    off = 0
    blobs = []
    dt = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}
    for k in names:
        t = sd[k].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[k] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def shrink(sd, old_blocks):
    """Keeps block 10 only, renumbers the layers after the blocks, divides channels by 8."""
    out_sd = {}
    for k, v in sd.items():
        parts = k.split(".")
        i = int(parts[1])
        if 10 < i < 10 + old_blocks:
            continue
        if i >= 10 + old_blocks:
            parts[1] = str(i - (old_blocks - 1))
        idx = tuple(slice(0, d // 8 if d >= 8 else d) for d in v.shape)
        out_sd[".".join(parts)] = v[idx].clone() * 0.5
    return out_sd


def torch_bytes(obj, legacy):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def weights():
    seed = shrink(read_safetensors(os.path.join(FIX, "el_ngf8_b9.safetensors")), 9)
    official = shrink(
        torch.load(os.path.join(FIX, "jz_ngf8_b9.pth"), map_location="cpu", weights_only=True),
        9,
    )
    out("weights", "seed_ngf1_b1.safetensors", write_safetensors(seed, {"layout": "seed", "ngf": "1"}))
    out("weights", "official_ngf1_b1_f16.safetensors",
        write_safetensors({k: v.half() for k, v in official.items()}))
    out("weights", "official_ngf1_b1.pth", torch_bytes(official, legacy=False))
    out("weights", "official_ngf1_b1_legacy.pth", torch_bytes(official, legacy=True))
    out("weights", "seed_ngf1_b1_module_prefix.pth",
        torch_bytes({"module." + k: v for k, v in seed.items()}, legacy=False))
    # A training checkpoint: two generators under prefixes, with an int64 counter.
    ckpt = {"G_A": official, "G_B": official, "epoch": 3,
            "G_A.num_batches_tracked": torch.tensor(5)}
    out("weights", "checkpoint_two_generators_legacy.pth", torch_bytes(ckpt, legacy=True))
    # Deflated zip entries (torch stores them uncompressed).
    src = zipfile.ZipFile(io.BytesIO(torch_bytes(official, legacy=False)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info))
    out("weights", "official_ngf1_b1_deflated.pth", buf.getvalue())
    # Truncated fixtures: the first bytes of each real format.
    for name in ["el_ngf8_b9.safetensors", "el_ngf8_b9.pth", "jz_ngf8_b9_legacy.pth"]:
        out("weights", "truncated_" + name, open(os.path.join(FIX, name), "rb").read()[:2048])


def images():
    img = Image.new("RGB", (8, 6))
    for y in range(6):
        for x in range(8):
            img.putpixel((x, y), (x * 30, y * 40, (x + y) * 15))
    rgba = img.convert("RGBA")
    rgba.putpixel((0, 0), (1, 2, 3, 0))

    def save(im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()

    out("decode", "rgb8.png", save(img, "PNG"))
    out("decode", "rgba8.png", save(rgba, "PNG"))
    out("decode", "gray8.png", save(img.convert("L"), "PNG"))
    out("decode", "palette.png", save(img.convert("P"), "PNG"))
    out("decode", "gray16.png", save(img.convert("I;16"), "PNG"))
    out("decode", "rgb.jpg", save(img, "JPEG", quality=80))
    out("decode", "gray_progressive.jpg", save(img.convert("L"), "JPEG", progressive=True))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    out("decode", "rgb_exif_rotate.jpg", save(img, "JPEG", exif=exif.tobytes()))
    out("decode", "rgb.tif", save(img, "TIFF"))
    out("decode", "rgba_deflate.tif", save(rgba, "TIFF", compression="tiff_adobe_deflate"))
    out("decode", "rgb_lossless.webp", save(img, "WEBP", lossless=True))
    out("decode", "rgba_lossy.webp", save(rgba, "WEBP", quality=50))


def capi():
    """Inputs for fuzz_targets/capi_image.rs; the layout is documented there."""

    def case(flags, sw, sh, sfmt, sstride, dw, dh, dfmt, dstride, opt=b"", tail=b""):
        head = struct.pack("<B", flags)
        head += struct.pack("<IIIq", sw, sh, sfmt, sstride)
        head += struct.pack("<IIIq", dw, dh, dfmt, dstride)
        opt = opt.ljust(22, b"\0")
        return head + opt + tail

    rnd = bytes((i * 37 + 11) & 0xFF for i in range(600))
    out("capi_image", "rgba8_4x4", case(0, 4, 4, 1, 0, 4, 4, 1, 0, tail=rnd))
    out("capi_image", "rgb8_to_rgbaf32_padded", case(0, 5, 3, 0, 4, 5, 3, 4, 8, tail=rnd))
    out("capi_image", "in_place_rgb16", case(4, 3, 3, 2, 2, 3, 3, 2, 2, tail=rnd))
    out("capi_image", "short_stride", case(0, 4, 4, 1, -1, 4, 4, 1, 0, tail=rnd))
    out("capi_image", "unknown_format", case(0, 4, 4, 9, 0, 4, 4, 1, 0, tail=rnd))
    out("capi_image", "size_mismatch", case(0, 4, 4, 1, 0, 4, 5, 1, 0, tail=rnd))
    out("capi_image", "null_data", case(1, 4, 4, 1, 0, 4, 4, 1, 0, tail=rnd))
    out("capi_image", "huge_raw_size", case(0x40, 0xFFFFFFFF, 0xFFFFFFFF, 3, 0, 4, 4, 1, 0, tail=rnd))
    opts = struct.pack("<BfffII", 0x1F, 0.5, 2.0, 1.0, 64, 1)
    out("capi_image", "with_options", case(8, 6, 6, 0, 0, 6, 6, 3, 0, opt=opts, tail=rnd))
    nan = struct.pack("<BfffII", 0x1F, float("nan"), float("inf"), -0.0, 63, 5000)
    out("capi_image", "nan_options", case(8, 6, 6, 0, 0, 6, 6, 3, 0, opt=nan, tail=rnd))
    out("capi_image", "cancel", case(0x10, 4, 4, 1, 0, 4, 4, 1, 0, opt=b"\0" * 21 + b"\x01", tail=rnd))


if __name__ == "__main__":
    weights()
    images()
    capi()
