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


# Clicks an op of the graph that is not the one selected at load, then reports what the panel shows.
PROBE_CLICK = """<script>
window.addEventListener('load',function(){
  var panel=document.getElementById('panel');
  var before=panel.getAttribute('data-selected');
  var ops=document.querySelectorAll('#graph g.op[data-layer]');
  var target=null;for(var i=0;i<ops.length;i++){if(ops[i].getAttribute('data-layer')!==before){target=ops[i];break;}}
  target.dispatchEvent(new MouseEvent('click',{bubbles:true}));
  var p=document.createElement('pre');p.id='probe';
  p.textContent=JSON.stringify({errors:window.__errors,before:before,after:panel.getAttribute('data-selected'),clicked:target.getAttribute('data-layer'),
    title:panel.querySelector('h3').textContent,hist:panel.querySelectorAll('svg.hist path').length,points:panel.querySelectorAll('svg.scatter circle').length,
    ops:document.querySelectorAll('#graph g.op').length,floatOps:document.querySelectorAll('#graph g.fl').length,edges:document.querySelectorAll('#graph .edges path').length});
  document.body.appendChild(p);});
</script>"""


def probe_click(tmp_path, html):
    import json
    import re
    text = open(html).read()
    probed = str(tmp_path / "probed_click.html")
    open(probed, "w").write(text.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_CLICK + "</body>", 1))
    dom = chromium("--dump-dom", "file://" + probed).stdout
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    import html as h
    return json.loads(h.unescape(m.group(1)))


def test_clicking_an_op_shows_its_panel(tmp_path):
    """The graph draws every op; clicking one that is not selected selects it: the panel names it
    and draws its float and quantized histograms and the scatter of its sampled values."""
    import json
    setup_pair(tmp_path)
    rep = json.load(open(str(tmp_path / "cnn.report.json")))
    p = probe_click(tmp_path, str(tmp_path / "cnn.report.html"))
    assert p["errors"] == [], p
    assert p["before"] and p["after"] == p["clicked"] != p["before"], p
    assert p["title"] == rep["layers"][int(p["clicked"]) - 1]["node"], p
    assert p["hist"] == 2 and p["points"] > 50, p
    assert p["ops"] >= len(rep["layers"]) + 1 and p["edges"] >= p["ops"] - 1, p


def test_report_of_500_ops_stays_small(tmp_path):
    """A model of 500 quantized ops: the page embeds sampled values, so it stays under 4 MB and
    still opens without errors."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(250):
        w = numpy_helper.from_array((rng.standard_normal((16, 16)) * 0.25).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"matmul{i}"))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"], name=f"tanh{i}"))
        x = f"t{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", 16])], inits)
    model = str(tmp_path / "chain.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.save(str(tmp_path / "x.npy"), rng.standard_normal((16, 16)).astype(np.float32))
    quantkit("quantize", model, "--input", f"x={tmp_path / 'x.npy'}", "--quiet")
    html = str(tmp_path / "chain.report.html")
    rep = __import__("json").load(open(str(tmp_path / "chain.report.json")))
    assert len(rep["layers"]) >= 500
    size = os.path.getsize(html)
    assert size < 4 << 20, f"{size} bytes"
    p = probe_click(tmp_path, html)
    assert p["errors"] == [] and p["ops"] >= 500, p


@pytest.mark.parametrize("example,steps", [("efficientnet_lite0.json", 4), ("ppocrv4_rec.json", 4)])
def test_screenshots_of_real_reports(example, steps, tmp_path):
    """The reports of EfficientNet-Lite0 and PP-OCRv4 rec from their example configurations, as
    screenshots in out/screenshots (git-ignored) with the worst op selected; no script error."""
    from conftest import CACHE, ROOT
    name = example.split(".")[0]
    if not os.path.exists(os.path.join(CACHE, "models", f"{name}.onnx")):
        pytest.skip("model not fetched")
    out = str(tmp_path / f"{name}.q.onnx")
    r = subprocess.run([os.path.join(ROOT, ".build", "release", "quantkit"), "quantize", "-c", os.path.join("examples", example), "-o", out,
                        "--steps", str(steps), "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    html = str(tmp_path / f"{name}.report.html")
    p = probe_click(tmp_path, html)
    assert p["errors"] == [] and p["hist"] == 2 and p["points"] > 50, p
    shots = os.path.join(ROOT, "out", "screenshots")
    os.makedirs(shots, exist_ok=True)
    shot = os.path.join(shots, f"{name}.report.png")
    if os.path.exists(shot):
        os.remove(shot)
    c = chromium(f"--screenshot={shot}", "--window-size=1400,1600", "file://" + html)
    assert os.path.exists(shot) and os.path.getsize(shot) > 50_000, c.stderr[-2000:]
