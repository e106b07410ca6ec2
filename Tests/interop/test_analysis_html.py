"""The HTML report opens in headless Chromium (Debian `chromium`) without network access: a
screenshot is taken, no script error is raised, and the table sorts when a header is clicked."""
import os
import shutil
import subprocess

import pytest

from conftest import quantkit
from test_analysis import setup_pair

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed (scripts/setup.sh installs it)")

# Collects script errors into the DOM, then clicks the "graphwise SNR" header twice (descending).
PROBE_HEAD = """<script>window.__errors=[];window.onerror=function(m){window.__errors.push(String(m));};
window.addEventListener('error',function(e){window.__errors.push(String(e.message));});</script>"""
PROBE_TAIL = """<script>
window.addEventListener('load',function(){
  var th=document.querySelectorAll('#layers th')[3];th.click();th.click();
  var first=document.querySelector('#layers tbody tr').cells[3].textContent;
  var p=document.createElement('pre');p.id='probe';
  p.textContent='ERRORS['+window.__errors.join(';')+'] FIRST['+first+'] SVG['+document.querySelectorAll('svg').length+']';
  document.body.appendChild(p);});
</script>"""


def chromium(*args):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                           "--virtual-time-budget=3000", *args], capture_output=True, text=True, timeout=120)


def test_html_report_renders_without_errors(tmp_path):
    setup_pair(tmp_path)
    html = str(tmp_path / "cnn.report.html")
    text = open(html).read()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    shot = str(tmp_path / "shot.png")
    r = chromium(f"--screenshot={shot}", "--window-size=1200,1600", "file://" + html)
    assert os.path.exists(shot) and os.path.getsize(shot) > 10_000, r.stderr[-2000:]
    probed = str(tmp_path / "probed.html")
    open(probed, "w").write(text.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_TAIL + "</body>", 1))
    import re
    dom = chromium("--dump-dom", "file://" + probed).stdout
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert m, dom[-2000:]
    probe = m.group(1)
    assert "ERRORS[]" in probe, probe
    assert "SVG[0]" not in probe, probe
    # After two clicks the table is sorted by graphwise SNR descending: the first row holds the max.
    import json
    rep = json.load(open(str(tmp_path / "cnn.report.json")))
    worst = max(l["graphwise"]["snr"] for l in rep["layers"])
    first = float(re.search(r"FIRST\[([^\]]*)\]", probe).group(1))
    assert abs(first - worst) <= 1e-3 * worst, (first, worst)
