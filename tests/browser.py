"""Headless Chromium for the tests that open a page (Debian's ``chromium``; ``.ci/run`` installs it)."""
import html
import json
import re
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get "
                                    "install chromium; .ci/run installs it)")


def chromium(tmp_path, *args, timeout=180):
    """Run Chromium once with a fresh profile; its stdout (``--dump-dom``: the page's DOM after load)."""
    profile = tmp_path / f"profile{len(list(tmp_path.iterdir()))}"  # a fresh profile each run
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def script_json(obj):
    """``obj`` as a JavaScript literal that is safe inside a ``<script>`` element."""
    return json.dumps(obj, ensure_ascii=True).replace("</", "<\\/")


def dom_json(dom, element_id):
    """The JSON a page wrote as the text of ``<pre id=element_id>`` (read back from ``--dump-dom``)."""
    m = re.search(rf'<pre id="{element_id}">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    return json.loads(html.unescape(m.group(1)))


def page_with_script(folder, name, script):
    """A copy of ``folder``'s exported index.html named ``name`` with ``script`` before ``</body>``; its path."""
    import os

    page = open(os.path.join(folder, "index.html"), encoding="utf-8").read()
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", script + "\n</body>", 1))
    return path
