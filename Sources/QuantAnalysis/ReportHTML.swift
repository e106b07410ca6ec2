import Foundation

extension AnalysisReport {
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// One self-contained HTML page (no network, no external scripts): summary, model outputs,
    /// the graph with the selected op's panel (its metrics, precision, range method, advice,
    /// float vs quantized histogram and scatter), SNR and cosine over the layers (inline SVG),
    /// the sortable layer table, each quantized activation's calibration histogram with its
    /// clipping range, and the model summary.
    public func html() -> String {
        let e = AnalysisReport.escape, f = AnalysisReport.format
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Quantization analysis: \(e(quantizedModel))</title>
            <style>
            body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
            table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
            td.l,th.l{text-align:left}th{background:#eee;cursor:pointer;user-select:none}
            tr.marked td{background:#fde8e8}svg{background:#fafafa;border:1px solid #ddd}
            .hist{display:inline-block;margin:4px;font-size:11px;vertical-align:top}
            .finding{background:#fde8e8;border-left:4px solid #c00;padding:4px 8px;margin:4px 0}
            \(AnalysisReport.graphStyle)</style></head><body>
            <h1>Quantization analysis</h1>
            \(findings.map { "<div class=finding><b>\(e($0))</b></div>" }.joined(separator: "\n"))
            <ul><li>float model: <code>\(e(floatModel))</code></li><li>quantized model: <code>\(e(quantizedModel))</code></li>
            <li>analysis data: \(samples) samples in \(batches) batches</li>
            <li>quantized ops: \(model.quantizedOps); marked (SNR &gt; \(f(snrWarning)) or cosine &lt; \(f(cosineWarning))): \(layers.filter(\.marked).count), of them bad by themselves (layerwise): \(markedByThemselves.count)</li>

            """
        if let k = model.integerKernels { h += "<li>integer kernels in ONNX Runtime: \(e(k.line))</li>\n" }
        for ev in evaluations {
            h += "<li>\(e(ev.name)): float \(f(ev.float)), quantized \(f(ev.quantized)), quantization loss \(f(ev.quantizationLoss)) %</li>\n"
        }
        for n in notes { h += "<li>note: \(e(n))</li>\n" }
        h += "</ul>\n"
        if let t = tuning {
            h += "<h2>Tuning</h2>\n<p>Target: \(e(t.target)), \(t.met ? "met" : "not met"); the model uses round \(t.chosen).</p>\n"
            h += "<table><tr><th>round</th><th class=l>change</th><th>value</th><th>met</th><th>integer kernels</th><th>latency (ms)</th><th>seconds</th></tr>\n"
            for r in t.rounds {
                h += "<tr\(r.round == t.chosen ? " style='font-weight:bold'" : "")><td>\(r.round)</td><td class=l>\(e(r.change))</td><td>\(f(r.value))</td><td>\(r.met ? "yes" : "no")</td>"
                h += "<td>\(r.integerKernels) of \(r.kernels)</td><td>\(f(r.latencyMs))</td><td>\(String(format: "%.1f", r.seconds))</td></tr>\n"
            }
            h += "</table>\n"
        }
        for sec in recovery ?? [] {
            h += "<h2>\(e(sec.title))</h2>\n<p>\(e(sec.text))</p>\n<table><tr>" + sec.columns.map { "<th class=l>\(e($0))</th>" }.joined() + "</tr>\n"
            for r in sec.rows { h += "<tr>" + r.map { "<td class=l>\(e($0))</td>" }.joined() + "</tr>\n" }
            h += "</table>\n"
        }
        h += "<h2>Model outputs</h2>\n<table><tr><th class=l>output</th><th>SNR</th><th>median item SNR</th><th>worst item SNR</th><th>cosine</th><th>MSE</th><th>MAE</th><th>rel. dist.</th><th>max abs err</th><th>top-1 agreement</th><th>mask IoU (&gt; 0.5)</th><th class=l>worst slice</th></tr>\n"
        for o in outputs {
            let m = o.metrics
            h += "<tr><td class=l>\(e(o.name))</td><td>\(f(m.snr))</td><td>\(f(m.medianItemSNR))</td><td>\(f(m.worstItemSNR))</td><td>\(f(m.cosine))</td><td>\(f(m.mse))</td><td>\(f(m.mae))</td><td>\(f(m.relativeEuclidean))</td><td>\(f(m.maxAbsError))</td><td>\(f(m.top1Agreement))</td><td>\(f(m.maskIoU))</td><td class=l>\(e(m.worstSlice.map(AnalysisReport.describe) ?? "–"))</td></tr>\n"
        }
        h += "</table>\n" + graphSection() + "<h2>Error over the layers</h2>\n"
        h += chart(title: "SNR (noise/signal, log scale; dashed: warning level)", log: true, threshold: snrWarning) { ($0.graphwise?.snr, $0.layerwise?.snr) }
        h += chart(title: "cosine similarity (dashed: warning level)", log: false, threshold: cosineWarning) { ($0.graphwise?.cosine, $0.layerwise?.cosine) }
        h += "<h2>Layers</h2>\n<p>Click a column header to sort. Graphwise: whole model quantized; layerwise: only this op quantized, its inputs from the float model.</p>\n"
        h += "<table id=layers><thead><tr><th>#</th><th class=l>node</th><th class=l>op</th><th>graphwise SNR</th><th>median item SNR</th><th>graphwise cosine</th><th>layerwise SNR</th><th>layerwise cosine</th><th>MSE</th><th>MAE</th><th>rel. dist.</th><th>max abs err</th><th class=l>what to try</th></tr></thead><tbody>\n"
        for l in layers {
            let g = l.graphwise
            h += "<tr\(l.marked ? " class=marked" : "")><td>\(l.index)</td><td class=l>\(e(l.node))</td><td class=l>\(e(l.opType))</td><td>\(f(g?.snr))</td><td>\(f(g?.medianItemSNR))</td><td>\(f(g?.cosine))</td>"
            h += "<td>\(f(l.layerwise?.snr))</td><td>\(f(l.layerwise?.cosine))</td><td>\(f(g?.mse))</td><td>\(f(g?.mae))</td><td>\(f(g?.relativeEuclidean))</td><td>\(f(g?.maxAbsError))</td><td class=l>\(e(l.advice.joined(separator: "; ")))</td></tr>\n"
        }
        h += "</tbody></table>\n<h2>Activation histograms</h2>\n<p>Calibration histogram (log count) of each quantized activation; red lines: the clipping range the quantized model uses.</p>\n<details><summary>\(histograms.count) histograms</summary>\n"
        for hist in histograms { h += histogramSVG(hist) }
        h += "</details>\n<h2>Model summary</h2>\n<ul><li>float nodes: \(model.floatNodes); quantized model nodes: \(model.quantizedModelNodes); parameters: \(model.parameters)</li>\n"
        h += "<li>inputs: \(e(model.inputs.joined(separator: "; ")))</li><li>outputs: \(e(model.outputs.joined(separator: "; ")))</li>\n"
        h += "<li>op types: \(e(model.opTypes.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")))</li></ul>\n"
        h += """
            <script>
            (function(){
              var t=document.getElementById('layers');if(!t)return;
              var ths=t.tHead.rows[0].cells;
              for(var i=0;i<ths.length;i++){(function(c){var asc=true;ths[c].addEventListener('click',function(){
                var rows=Array.prototype.slice.call(t.tBodies[0].rows);
                rows.sort(function(a,b){var x=a.cells[c].textContent,y=b.cells[c].textContent;
                  var nx=parseFloat(x),ny=parseFloat(y);
                  if(x==='inf')nx=Infinity;if(y==='inf')ny=Infinity;
                  var r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?r:-r;});
                asc=!asc;rows.forEach(function(r){t.tBodies[0].appendChild(r);});});})(i);}
            })();
            </script>
            \(AnalysisReport.graphScript)</body></html>

            """
        return h
    }

    /// A line chart over the layers: graphwise (blue) and layerwise (orange).
    func chart(title: String, log: Bool, threshold: Double, _ value: (Layer) -> (Double?, Double?)) -> String {
        let w = 900.0, ht = 220.0, pad = 40.0
        let vals = layers.map(value)
        func tr(_ v: Double) -> Double? {
            guard v.isFinite else { return nil }
            return log ? Foundation.log10(max(v, 1e-8)) : v
        }
        let all = vals.flatMap { [$0.0, $0.1].compactMap { $0 }.compactMap(tr) } + [tr(threshold)!]
        var lo = all.min() ?? 0, hi = all.max() ?? 1
        if hi - lo < 1e-9 { lo -= 0.5; hi += 0.5 }
        let n = max(layers.count - 1, 1)
        func x(_ i: Int) -> Double { pad + Double(i) * (w - 2 * pad) / Double(n) }
        func y(_ v: Double) -> Double { ht - pad / 2 - (v - lo) / (hi - lo) * (ht - pad) }
        func line(_ pick: ((Double?, Double?)) -> Double?, _ color: String) -> String {
            let pts = vals.enumerated().compactMap { i, v in pick(v).flatMap(tr).map { String(format: "%.1f,%.1f", x(i), y($0)) } }
            return pts.isEmpty ? "" : "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(pts.joined(separator: " "))\"/>"
        }
        let t = tr(threshold)!
        let label = { (v: Double) in log ? AnalysisReport.format(Foundation.pow(10, v)) : AnalysisReport.format(v) }
        return """
            <h3>\(AnalysisReport.escape(title))</h3>
            <svg width="\(Int(w))" height="\(Int(ht))" viewBox="0 0 \(Int(w)) \(Int(ht))" xmlns="http://www.w3.org/2000/svg">
            <text x="2" y="\(Int(y(hi)) + 4)" font-size="10">\(label(hi))</text><text x="2" y="\(Int(y(lo)))" font-size="10">\(label(lo))</text>
            <line x1="\(pad)" x2="\(w - pad)" y1="\(y(t))" y2="\(y(t))" stroke="#c00" stroke-dasharray="4 3"/>
            \(line({ $0.0 }, "#1f77b4"))\(line({ $0.1 }, "#ff7f0e"))
            <text x="\(w - 200)" y="14" font-size="11" fill="#1f77b4">graphwise</text><text x="\(w - 120)" y="14" font-size="11" fill="#ff7f0e">layerwise</text>
            <text x="\(w / 2)" y="\(ht - 2)" font-size="10">layer (graph order)</text>
            </svg>

            """
    }

    func histogramSVG(_ hg: ActivationHistogram) -> String {
        let w = 260.0, ht = 90.0
        let lo = min(hg.lo, hg.clipLo), hi = max(hg.lo + hg.binWidth * Double(hg.counts.count), hg.clipHi)
        let span = max(hi - lo, 1e-12)
        func x(_ v: Double) -> Double { (v - lo) / span * w }
        let top = Foundation.log10(1 + (hg.counts.max() ?? 1))
        // One path of bars (a rect each would be four times the bytes on a 500-op model).
        var d = ""
        for (i, c) in hg.counts.enumerated() where c > 0 {
            let x0 = x(hg.lo + Double(i) * hg.binWidth), x1 = x(hg.lo + Double(i + 1) * hg.binWidth)
            let bh = Foundation.log10(1 + c) / max(top, 1e-12) * (ht - 10)
            d += String(format: "M%.1f %.0fV%.1fH%.1fV%.0fZ", x0, ht, ht - bh, x0 + max(x1 - x0, 0.5), ht)
        }
        let bars = d.isEmpty ? "" : "<path fill=\"#4a7\" d=\"\(d)\"/>"
        return """
            <div class="hist"><div>\(AnalysisReport.escape(hg.tensor))</div>
            <svg width="\(Int(w))" height="\(Int(ht))" xmlns="http://www.w3.org/2000/svg">\(bars)
            <line x1="\(x(hg.clipLo))" x2="\(x(hg.clipLo))" y1="0" y2="\(ht)" stroke="#c00"/><line x1="\(x(hg.clipHi))" x2="\(x(hg.clipHi))" y1="0" y2="\(ht)" stroke="#c00"/></svg>
            <div>data [\(AnalysisReport.format(hg.min)), \(AnalysisReport.format(hg.max))], clip [\(AnalysisReport.format(hg.clipLo)), \(AnalysisReport.format(hg.clipHi))]</div></div>

            """
    }
}
