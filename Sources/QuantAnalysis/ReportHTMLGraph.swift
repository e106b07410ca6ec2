import Foundation

extension AnalysisReport {
    /// What the page's script reads per layer (the table's rows, in order): metrics as text, as
    /// the tables show them, and the sampled value pairs rounded to 4 digits.
    struct PanelLayer: Encodable {
        var node: String
        var op: String
        var tensor: String
        var precision: String
        var method: String
        /// Graphwise then layerwise: SNR, cosine, median item SNR, MSE, MAE, max abs error.
        var metrics: [String]
        var advice: [String]
        var marked: Bool
        var clip: [Double]?
        var values: [Float]
    }

    /// The diagram (inline SVG: inputs at the top, each op coloured by its graphwise error,
    /// float ops dashed and grey) beside the selected op's panel, with the data the panel draws.
    func graphSection() -> String {
        guard !graph.isEmpty else { return "" }
        let e = AnalysisReport.escape, f = AnalysisReport.format
        let w = 150.0, h = 26.0, dx = 170.0, dy = 46.0
        var perRank: [Int: Int] = [:]
        for n in graph { perRank[n.rank] = max(perRank[n.rank] ?? 0, n.slot + 1) }
        let widest = Double(perRank.values.max() ?? 1)
        let width = widest * dx + 20, height = Double((graph.map(\.rank).max() ?? 0) + 1) * dy + 20
        func x(_ n: GraphNode) -> Double { width / 2 + (Double(n.slot) - Double(perRank[n.rank]! - 1) / 2) * dx - w / 2 }
        func y(_ n: GraphNode) -> Double { 10 + Double(n.rank) * dy }
        let byIndex = Dictionary(layers.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a })
        // Colour by graphwise SNR (noise/signal): green at 1e-4 or less, red at 1e-1 or more.
        func fill(_ l: Layer?) -> String {
            guard let snr = l?.graphwise?.snr else { return "#eeeeee" }
            let t = snr.isFinite && snr > 0 ? min(max((log10(snr) + 4) / 3, 0), 1) : (snr == 0 ? 0 : 1)
            return String(format: "hsl(%.0f,70%%,72%%)", 120 * (1 - t))
        }
        var edges = "", boxes = ""
        for (i, n) in graph.enumerated() {
            let x2 = x(n) + w / 2, y2 = y(n)
            for p in n.inputs {
                let a = graph[p]
                let x1 = x(a) + w / 2, y1 = y(a) + h
                edges += String(format: "<path d=\"M%.0f %.0fC%.0f %.0f,%.0f %.0f,%.0f %.0f\"/>", x1, y1, x1, y1 + 14, x2, y2 - 14, x2, y2)
            }
            let l = n.layer.flatMap { byIndex[$0] }
            let cls = n.opType == "Input" ? "op in" : l == nil ? "op fl" : l!.marked ? "op q mk" : "op q"
            let label = n.opType.count > 20 ? String(n.opType.prefix(19)) + "…" : n.opType
            let title = "\(n.name) (\(n.opType))" + (l.map { ": graphwise SNR \(f($0.graphwise?.snr)), cosine \(f($0.graphwise?.cosine))" } ?? (n.opType == "Input" ? "" : ": float"))
            boxes += String(format: "<g class=\"%@\" data-i=\"%d\"%@ transform=\"translate(%.0f %.0f)\"><title>%@</title><rect width=\"%.0f\" height=\"%.0f\" rx=\"4\" fill=\"%@\"/><text x=\"%.0f\" y=\"17\">%@</text></g>",
                            cls, i, l.map { String(format: " data-layer=\"%d\"", $0.index) } ?? "", x(n), y(n), e(title), w, h, fill(l), w / 2, e(label))
        }
        var h2 = """
            <h2>Graph</h2>
            <p>The quantized model's ops (QuantizeLinear/DequantizeLinear left out), inputs at the top. Colour: graphwise SNR, green 1e-4 or less to red 0.1 or more; \
            grey dashed: the op stays float; red border: marked. Click an op (or a row of the layer table) to see its values.</p>
            <div class=workspace><div id=graphbox><svg id=graph width="\(Int(width))" height="\(Int(height))" xmlns="http://www.w3.org/2000/svg"><g class=edges>\(edges)</g>\(boxes)</svg></div>
            <div id=panel><p>Select an op.</p></div></div>

            """
        // Sampled values: at most 32768 pairs in all (256 per op up to 128 ops), so that a
        // 500-op model's page stays a few MB.
        let pairs = max(32, min(ValueSamples.pairs, 32768 / max(layers.count, 1)))
        let panel = layers.map { l -> PanelLayer in
            let g = l.graphwise, lw = l.layerwise
            var precision = l.activationType.map { "\($0) activations" } ?? "float output"
            if let wt = l.weightType { precision += ", \(wt) weights " + (l.weightPerChannel == true ? "per channel" : "per tensor") }
            let all = valueSamples[l.tensor] ?? []
            var values: [Float] = []
            values.reserveCapacity(2 * pairs)
            let n = all.count / 2
            for i in 0..<min(n, pairs) {
                let j = n <= pairs ? i : i * n / pairs
                values += [Float(String(format: "%.4g", all[2 * j])) ?? all[2 * j], Float(String(format: "%.4g", all[2 * j + 1])) ?? all[2 * j + 1]]
            }
            return PanelLayer(node: l.node, op: l.opType, tensor: l.tensor, precision: precision, method: rangeMethods[l.tensor] ?? "–",
                              metrics: [g, lw].flatMap { m in [f(m?.snr), f(m?.cosine), f(m?.medianItemSNR), f(m?.mse), f(m?.mae), f(m?.maxAbsError)] },
                              advice: l.advice, marked: l.marked, clip: clipRanges[l.tensor], values: values)
        }
        // The worst op by its own error is selected first.
        let first = markedByThemselves.first?.index ?? worstLayers.first?.index ?? 0
        let enc = JSONEncoder()
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        let data = (try? enc.encode(panel)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        h2 += "<script id=layerdata type=\"application/json\">\(data.replacingOccurrences(of: "</", with: "<\\/"))</script>\n"
        h2 += "<script>window.firstLayer=\(first);</script>\n"
        return h2
    }

    static let graphStyle = """
        .workspace{display:flex;gap:12px;align-items:flex-start}
        #graphbox{flex:3;overflow:auto;max-height:80vh;border:1px solid #ddd;background:#fafafa}
        #panel{flex:2;position:sticky;top:8px;border:1px solid #ddd;padding:8px;font-size:13px;min-width:360px}
        #graph{display:block;margin:0 auto}#graph .edges path{fill:none;stroke:#999;stroke-width:1}
        #graph g.op{cursor:pointer}#graph g.op text{font-size:11px;text-anchor:middle;pointer-events:none}
        #graph g.op rect{stroke:#666;stroke-width:1}#graph g.fl rect{stroke-dasharray:4 2}#graph g.in rect{fill:#dbe9f6}
        #graph g.mk rect{stroke:#c00;stroke-width:2.5}#graph g.sel rect{stroke:#000;stroke-width:3}
        #panel table td{text-align:right}#panel svg{background:#fff;border:1px solid #ddd;margin:4px 0}
        tr.sel td{outline:2px solid #000}

        """

    /// The panel: the selected op's metrics, precision, range method, advice, and the float vs
    /// quantized histogram (clip range in red) and scatter of its sampled values.
    static let graphScript = """
        <script>
        (function(){
          var node=document.getElementById('layerdata');if(!node)return;
          var L=JSON.parse(node.textContent),panel=document.getElementById('panel');
          function esc(s){return String(s).replace(/[&<>"]/g,function(c){return{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});}
          function fmt(v){return Math.abs(v)>=1e-3&&Math.abs(v)<1e5||v===0?(+v.toPrecision(4)).toString():v.toExponential(2);}
          function hist(l){
            var v=l.values,n=v.length/2;if(!n)return '<p>No values sampled (the float model has no such tensor).</p>';
            var lo=Infinity,hi=-Infinity,i;
            for(i=0;i<v.length;i++){lo=Math.min(lo,v[i]);hi=Math.max(hi,v[i]);}
            if(hi-lo<1e-12){hi=lo+1;}
            var B=40,W=340,H=120,f=new Array(B).fill(0),q=new Array(B).fill(0);
            for(i=0;i<n;i++){f[Math.min(B-1,Math.floor((v[2*i]-lo)/(hi-lo)*B))]++;q[Math.min(B-1,Math.floor((v[2*i+1]-lo)/(hi-lo)*B))]++;}
            var top=Math.log(1+(Math.max.apply(null,f.concat(q))||1));
            function line(c,col){var p='';for(var b=0;b<B;b++){var x0=b*W/B,x1=(b+1)*W/B,y=H-Math.log(1+c[b])/top*(H-12);p+=(b?'L':'M')+x0.toFixed(1)+' '+y.toFixed(1)+'L'+x1.toFixed(1)+' '+y.toFixed(1);}
              return '<path d="'+p+'" fill="none" stroke="'+col+'" stroke-width="1.5"/>';}
            function xs(t){return ((t-lo)/(hi-lo)*W).toFixed(1);}
            var s='<svg class=hist width="'+W+'" height="'+H+'">'+line(f,'#1f77b4')+line(q,'#ff7f0e');
            if(l.clip){l.clip.forEach(function(c){if(c>=lo&&c<=hi){s+='<line x1="'+xs(c)+'" x2="'+xs(c)+'" y1="0" y2="'+H+'" stroke="#c00"/>';}});}
            s+='<text x="4" y="11" font-size="10" fill="#1f77b4">float</text><text x="40" y="11" font-size="10" fill="#ff7f0e">quantized</text>';
            s+='<text x="'+(W-4)+'" y="11" font-size="10" text-anchor="end">'+n+' values sampled</text></svg>';
            s+='<div style="font-size:11px">sampled values in ['+fmt(lo)+', '+fmt(hi)+'] (log count)'+(l.clip?'; clip range (red where inside) ['+fmt(l.clip[0])+', '+fmt(l.clip[1])+']':'')+'</div>';
            var S=220,pts='';
            for(i=0;i<n;i++){pts+='<circle cx="'+((v[2*i]-lo)/(hi-lo)*S).toFixed(1)+'" cy="'+(S-(v[2*i+1]-lo)/(hi-lo)*S).toFixed(1)+'" r="1.6"/>';}
            s+='<svg class=scatter width="'+S+'" height="'+S+'"><line x1="0" y1="'+S+'" x2="'+S+'" y2="0" stroke="#bbb"/><g fill="#1f77b4" fill-opacity="0.6">'+pts+'</g>';
            s+='<text x="4" y="'+(S-4)+'" font-size="10">float →</text><text x="4" y="11" font-size="10">↑ quantized</text></svg>';
            return s;
          }
          var box=document.getElementById('graphbox');
          function reveal(g){if(!g||!box)return;var m=g.transform.baseVal.consolidate().matrix;
            box.scrollTop=Math.max(0,m.f-box.clientHeight/2);box.scrollLeft=Math.max(0,m.e+75-box.clientWidth/2);}
          function select(k){
            var l=L[k-1];if(!l)return;
            document.querySelectorAll('#graph g.sel').forEach(function(g){g.classList.remove('sel');});
            var g=document.querySelector('#graph g.op[data-layer="'+k+'"]');
            if(g){g.classList.add('sel');}
            document.querySelectorAll('#layers tr.sel').forEach(function(r){r.classList.remove('sel');});
            document.querySelectorAll('#layers tbody tr').forEach(function(r){if(r.cells[0].textContent==String(k))r.classList.add('sel');});
            var s='<h3>'+esc(l.node)+'</h3><div>'+esc(l.op)+' · output <code>'+esc(l.tensor)+'</code></div>';
            s+='<div>precision: '+esc(l.precision)+'; range method: '+esc(l.method)+(l.marked?'; <b style="color:#c00">marked</b>':'')+'</div><table>';
            s+='<tr><th></th><th>graphwise</th><th>layerwise</th></tr>';
            ['SNR','cosine','median item SNR','MSE','MAE','max abs err'].forEach(function(name,i){s+='<tr><td>'+name+'</td><td>'+esc(l.metrics[i])+'</td><td>'+esc(l.metrics[i+6])+'</td></tr>';});
            s+='</table>'+hist(l);
            if(l.advice.length){s+='<div><b>What to try:</b><ul>'+l.advice.map(function(a){return '<li>'+esc(a)+'</li>';}).join('')+'</ul></div>';}
            panel.innerHTML=s;panel.setAttribute('data-selected',String(k));
          }
          document.querySelectorAll('#graph g.op').forEach(function(g){g.addEventListener('click',function(){
            var k=g.getAttribute('data-layer');
            if(k){select(+k);}else{panel.innerHTML='<h3>'+esc(g.querySelector('title').textContent)+'</h3><p>Not quantized: nothing to compare.</p>';panel.setAttribute('data-selected','');}
          });});
          var t=document.getElementById('layers');
          if(t){t.tBodies[0].addEventListener('click',function(ev){var r=ev.target.closest('tr');if(!r)return;var k=+r.cells[0].textContent;select(k);
            reveal(document.querySelector('#graph g.op[data-layer="'+k+'"]'));});}
          if(window.firstLayer){select(window.firstLayer);reveal(document.querySelector('#graph g.sel'));}
        })();
        </script>

        """
}
