"""The seed CycleGAN generator's forward time on the CPU in PyTorch eager, torch.compile
(inductor) and onnxruntime, with the same threads, for `cargo bench --bench stylize --
--compare` (issue #18).

  pip install torch safetensors onnxruntime onnx onnxscript
  python3 scripts/bench_torch_cpu.py --sizes 256 512 --threads 2 --reps 5 \
      [--weights models/monet.safetensors] [--variants eager,compile,ort] [--freezing]

Needs ref_cyclegan.py from <repo>/../shared/reference. Batch 1, a random 1x3xSxS input in
[-1, 1], under torch.inference_mode(); median of --reps runs after warm-up. Prints on
stdout one line per variant and size:

  variant NAME size S median_ms X setup_s Y

setup_s is the one-off cost before steady state: torch.compile's first call(s) (tracing,
code generation, C++ compilation), or the ONNX export and session creation; 0 for eager.
Each size gets its own static compile and its own ONNX export. The outputs of compile and
ort are checked against eager (max abs difference, on stderr; a warning above 1e-3). A
variant whose package is missing or that fails is skipped with a notice on stderr.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.normpath(os.path.join(REPO, "..", "shared", "reference")))

import torch  # noqa: E402
from ref_cyclegan import GeneratorResNet  # noqa: E402

VARIANTS = ("eager", "compile", "ort")
TOLERANCE = 1e-3


def note(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["256", "512"],
                   help="square sizes, space or comma separated")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--weights", default=os.path.join(REPO, "models", "monet.safetensors"))
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma separated, of " + ",".join(VARIANTS))
    p.add_argument("--freezing", action="store_true",
                   help="inductor freezing (constant weights folded and prepacked for oneDNN)")
    a = p.parse_args()
    a.sizes = [int(s) for arg in a.sizes for s in arg.split(",") if s]
    a.variants = [v for v in a.variants.split(",") if v]
    for v in a.variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    return a


def load_generator(path):
    g = GeneratorResNet().eval()
    from safetensors.torch import load_file
    # Stored as f16; the benchmark runs f32 as the engine's default.
    g.load_state_dict({k: v.float() for k, v in load_file(path).items()})
    return g


def median_ms(f, x, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f(x)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def check(name, size, y, ref):
    d = (y - ref).abs().max().item()
    verdict = "ok" if d <= TOLERANCE else f"WARNING: above {TOLERANCE:g}"
    note(f"parity {name} vs eager at {size}: max abs diff {d:.2e} ({verdict})")


def run_eager(g, x, reps):
    g(x)  # warm-up
    return median_ms(g, x, reps), 0.0


def run_compile(g, x, reps, ref):
    from torch import _dynamo
    _dynamo.reset()  # a fresh, static compile per size
    c = torch.compile(g, dynamic=False)
    t = time.perf_counter()
    y = c(x)  # traces, generates and builds the C++ kernels
    c(x)
    setup = time.perf_counter() - t
    check("compile", x.shape[-1], y, ref)
    return median_ms(c, x, reps), setup


def run_ort(g, x, reps, threads, ref):
    import onnxruntime as ort
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "generator.onnx")
        torch.onnx.export(g, (x,), path, input_names=["x"], output_names=["y"], verbose=False)
        opt = ort.SessionOptions()
        opt.intra_op_num_threads = threads
        opt.inter_op_num_threads = 1
        opt.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opt.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, opt, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    f = lambda v: sess.run(None, {"x": v})[0]  # noqa: E731
    y = f(xn)  # warm-up
    setup = time.perf_counter() - t
    check("ort", x.shape[-1], torch.from_numpy(y), ref)
    return median_ms(f, xn, reps), setup


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.freezing and "compile" in a.variants:
        from torch._inductor import config as inductor_config
        inductor_config.freezing = True
    g = load_generator(a.weights)
    note(f"torch {torch.__version__}, threads {torch.get_num_threads()}, weights {a.weights}"
         + (", inductor freezing" if a.freezing else ""))
    if "ort" in a.variants:
        try:
            import onnx
            import onnxruntime
            note(f"onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}")
        except ImportError as e:
            note(f"skipping ort: {e} (pip install onnxruntime onnx onnxscript)")
            a.variants.remove("ort")
    failed = set()
    for s in a.sizes:
        x = torch.rand(1, 3, s, s) * 2 - 1
        with torch.inference_mode():
            ref = g(x)  # eager reference output; also eager's warm-up
            for v in a.variants:
                if v in failed:
                    continue
                try:
                    if v == "eager":
                        ms, setup = run_eager(g, x, a.reps)
                    elif v == "compile":
                        ms, setup = run_compile(g, x, a.reps, ref)
                    else:
                        ms, setup = run_ort(g, x, a.reps, a.threads, ref)
                except Exception as e:  # a variant that fails is skipped, not fatal
                    note(f"skipping {v}: failed at size {s}: {type(e).__name__}: {e}")
                    failed.add(v)
                    continue
                if setup:
                    what = "compile" if v == "compile" else "export + session"
                    note(f"{v} at {s}: {what} {setup:.1f} s, steady {ms:.1f} ms")
                print(f"variant {v} size {s} median_ms {ms:.1f} setup_s {setup:.1f}", flush=True)


if __name__ == "__main__":
    main()
