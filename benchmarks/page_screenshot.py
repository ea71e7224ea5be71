"""The screenshot of the exported page in docs/export.md (docs/images/page.png): the student ``tinykd demo`` saves,
exported with ``tinykd export MODEL --web DIR``, an answer to the demo's first question typed in headless Chromium.

    tinykd demo                                    # writes tinykd-demo/demo.npz
    python benchmarks/page_screenshot.py           # [--model tinykd-demo/demo.npz] [--out docs/images/page.png]

The demo's classes are the codes 0 / 1 / 2; the page shows their names (``tinykd.cli.demo.LABEL_NAMES``, as
``--label-names "0=correct,1=contradictory,2=incorrect"`` would store them) when the file has none. The answer
is typed as a user would (an ``input`` event), so the picture is the page's own rendering of it.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tinykd  # noqa: E402
from tinykd.cli.demo import LABEL_NAMES  # noqa: E402
from tinykd.export.page import export_web  # noqa: E402

REFERENCE = "The boat with 0 marbles is the standard in this experiment."  # SciEntsBank VB_40a
ANSWER = "The standard is the boat with 0 marbles in it."
TYPE = """<script>(function () {
  var d = document, data = %s;
  d.getElementById("context").value = data.context;
  var box = d.getElementById("answer");
  box.value = data.answer;
  box.dispatchEvent(new Event("input"));
})();</script>"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join("tinykd-demo", "demo.npz"))
    ap.add_argument("--out", default=os.path.join("docs", "images", "page.png"))
    ap.add_argument("--answer", default=ANSWER)
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs headless Chromium (Debian: apt-get install chromium)")
    model = tinykd.load(args.model)
    if "label_names" not in model.meta:
        model.label_names = LABEL_NAMES
    p = model.predict_proba([args.answer], [REFERENCE])[0]
    print(f"{args.answer!r}: {model.label_names[int(p.argmax())]} ({p.max():.2f})")
    with tempfile.TemporaryDirectory() as tmp:
        export_web(model, os.path.join(tmp, "page"), title="tinykd scorer: SciEntsBank (tinykd demo)")
        page = os.path.join(tmp, "page", "index.html")
        text = open(page, encoding="utf-8").read()
        typed = TYPE % json.dumps({"context": REFERENCE, "answer": args.answer}).replace("</", "<\\/")
        shot = os.path.join(tmp, "page", "shot.html")  # beside model.js and scorer.js
        with open(shot, "w", encoding="utf-8") as f:
            f.write(text.replace("</body>", typed + "\n</body>", 1))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--hide-scrollbars", f"--user-data-dir={os.path.join(tmp, 'profile')}",
                        "--force-device-scale-factor=1", "--window-size=760,710",
                        f"--screenshot={os.path.abspath(args.out)}", "file://" + shot],
                       check=True, capture_output=True, timeout=180)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
