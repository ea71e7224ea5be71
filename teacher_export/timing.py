"""``python -m teacher_export.timing TEACHER_DIR PAIRS.json THREADS``: a saved teacher's scoring time.

Prints ``{"ms_per_response": …}`` for the ``[answer, context]`` pairs in ``PAIRS.json`` (batches of 32,
dynamic padding, after one warm-up batch). ``benchmarks/build_demo_data.py`` runs it in its own process, so that tinykd
itself never imports torch or transformers.
"""
import json
import sys
import time


def main(argv=None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, pairs_file, threads = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(int(threads))
    with open(pairs_file, encoding="utf-8") as f:
        pairs = json.load(f)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()

    def run(batch):
        enc = tok([p[0] for p in batch], [p[1] for p in batch], truncation=True, max_length=128,
                  padding=True, return_tensors="pt")
        with torch.inference_mode():
            return model(**enc).logits

    run(pairs[:8])
    t = time.perf_counter()
    for s in range(0, len(pairs), 32):
        run(pairs[s:s + 32])
    print(json.dumps({"ms_per_response": 1000 * (time.perf_counter() - t) / len(pairs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
