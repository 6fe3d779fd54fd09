"""PyTorch's time for the seed generator on the GPU, for the side-by-side table of
scripts/gpu-check.sh: eager fp32, tf32 and bf16 channels-last, median ms of 10 runs after
3 warm-ups, synchronized; then torch.compile of the bf16 channels-last model at
--compile-size (1024: the target of issue #15), compile time apart. Needs ref_cyclegan.py (../shared/reference) beside it or on
PYTHONPATH."""
import argparse, statistics, sys, time, os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
from ref_cyclegan import GeneratorResNet

p = argparse.ArgumentParser()
p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
p.add_argument("--compile-size", type=int, default=1024, help="0: no torch.compile")
a = p.parse_args()

G = GeneratorResNet().cuda().eval()


def median_ms(model, x):
    with torch.no_grad():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        ts = []
        for _ in range(10):
            t = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
print("| size | torch fp32 ms | torch tf32 ms | torch bf16 channels-last ms |")
print("| --- | --- | --- | --- |")
for s in a.sizes:
    x = torch.rand(1, 3, s, s, device="cuda") * 2 - 1
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    fp32 = median_ms(G, x)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    tf32 = median_ms(G, x)
    Gb = GeneratorResNet().cuda().eval().to(torch.bfloat16, memory_format=torch.channels_last)
    xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    bf16 = median_ms(Gb, xb)
    print(f"| {s} | {fp32:.1f} | {tf32:.1f} | {bf16:.1f} |")

if a.compile_size:
    s = a.compile_size
    Gb = GeneratorResNet().cuda().eval().to(torch.bfloat16, memory_format=torch.channels_last)
    xb = (torch.rand(1, 3, s, s, device="cuda") * 2 - 1).to(torch.bfloat16)
    xb = xb.contiguous(memory_format=torch.channels_last)
    try:
        Gc = torch.compile(Gb)
        t = time.perf_counter()
        with torch.no_grad():
            Gc(xb)
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - t
        print(f"torch.compile bf16 channels-last, {s} px: {median_ms(Gc, xb):.1f} ms "
              f"(compiled in {compile_s:.0f} s)")
    except Exception as e:  # a missing compiler on the device must not hide the rest
        print(f"torch.compile failed: {e}")
