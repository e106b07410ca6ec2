import Foundation

extension AnalysisReport {
    /// A number for tables: 4 significant digits, `inf`/`nan` spelled out.
    public static func format(_ x: Double?) -> String {
        guard let x else { return "–" }
        if x.isNaN { return "nan" }
        if x.isInfinite { return x > 0 ? "inf" : "-inf" }
        if x == 0 { return "0" }
        return abs(x) >= 1e-3 && abs(x) < 1e5 ? String(format: "%.4g", x) : String(format: "%.3e", x)
    }

    /// Escapes text for a Markdown table cell.
    static func cell(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "|", with: "\\|")
            .replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "`", with: "'")
    }

    /// The Markdown report: summary, model outputs, then one row per quantized op in graph
    /// order; marked rows carry a ⚠ and what to try.
    public func markdown() -> String {
        var s = "# Quantization analysis\n\n"
        if !findings.isEmpty {
            s += "## Findings\n\n" + findings.map { "- **\(AnalysisReport.cell($0))**\n" }.joined() + "\n"
        }
        s += "- float model: `\(AnalysisReport.cell(floatModel))`\n- quantized model: `\(AnalysisReport.cell(quantizedModel))`\n"
        s += "- analysis data: \(samples) samples in \(batches) batches\n"
        s += "- quantized ops: \(model.quantizedOps) (\(model.quantizedActivations) activations, \(model.quantizedWeights) weights/biases quantized)\n"
        if let k = model.integerKernels { s += "- integer kernels in ONNX Runtime: \(AnalysisReport.cell(k.line))\n" }
        let marked = layers.filter(\.marked)
        s += "- marked (SNR > \(AnalysisReport.format(snrWarning)) or cosine < \(AnalysisReport.format(cosineWarning))): \(marked.count)"
            + (marked.isEmpty ? "" : ", of them bad by themselves (layerwise): \(markedByThemselves.count)") + "\n"
        if !worstLayers.isEmpty {
            s += "- worst by themselves: " + worstLayers.prefix(5).map { "`\(AnalysisReport.cell($0.node))`" }.joined(separator: ", ") + "\n"
        }
        for e in evaluations {
            s += "- \(AnalysisReport.cell(e.name)): float \(AnalysisReport.format(e.float)), quantized \(AnalysisReport.format(e.quantized)), quantization loss \(AnalysisReport.format(e.quantizationLoss)) %\n"
        }
        for n in notes { s += "- note: \(AnalysisReport.cell(n))\n" }
        if let t = tuning {
            s += "\n## Tuning\n\nTarget: \(AnalysisReport.cell(t.target)), \(t.met ? "met" : "not met"); the model uses round \(t.chosen).\n\n"
            s += "| round | change | value | met | integer kernels | latency (ms) | seconds |\n|---|---|---|---|---|---|---|\n"
            for r in t.rounds {
                s += "| \(r.round)\(r.round == t.chosen ? " ✓" : "") | \(AnalysisReport.cell(r.change)) | \(AnalysisReport.format(r.value)) | \(r.met ? "yes" : "no") | "
                s += "\(r.integerKernels) of \(r.kernels) | \(AnalysisReport.format(r.latencyMs)) | \(String(format: "%.1f", r.seconds)) |\n"
            }
        }
        for sec in recovery ?? [] {
            s += "\n## \(AnalysisReport.cell(sec.title))\n\n\(AnalysisReport.cell(sec.text))\n\n"
            s += "| " + sec.columns.map(AnalysisReport.cell).joined(separator: " | ") + " |\n|" + String(repeating: "---|", count: sec.columns.count) + "\n"
            for r in sec.rows { s += "| " + r.map(AnalysisReport.cell).joined(separator: " | ") + " |\n" }
        }
        s += "\n## Model outputs\n\n| output | SNR | median item SNR | worst item SNR | cosine | MSE | MAE | rel. dist. | max abs err | top-1 agreement | mask IoU (> 0.5) | worst slice |\n"
        s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        for o in outputs {
            let m = o.metrics
            s += "| `\(AnalysisReport.cell(o.name))` | \(AnalysisReport.format(m.snr)) | \(AnalysisReport.format(m.medianItemSNR)) | \(AnalysisReport.format(m.worstItemSNR)) | "
            s += "\(AnalysisReport.format(m.cosine)) | \(AnalysisReport.format(m.mse)) | "
            s += "\(AnalysisReport.format(m.mae)) | \(AnalysisReport.format(m.relativeEuclidean)) | \(AnalysisReport.format(m.maxAbsError)) | \(AnalysisReport.format(m.top1Agreement)) | \(AnalysisReport.format(m.maskIoU)) | \(AnalysisReport.cell(m.worstSlice.map(AnalysisReport.describe) ?? "–")) |\n"
        }
        s += "\n## Layers\n\nGraphwise: the whole model quantized. Layerwise: only this op quantized, its inputs from the float model. "
        s += "Median item SNR: graphwise, each analysis item on its own (large when quiet inputs suffer).\n\n"
        s += "| # | | node | op | graphwise SNR | median item SNR | graphwise cosine | layerwise SNR | layerwise cosine | MSE | MAE | max abs err | what to try |\n"
        s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        for l in layers {
            let g = l.graphwise
            s += "| \(l.index) | \(l.marked ? "⚠" : "") | `\(AnalysisReport.cell(l.node))` | \(AnalysisReport.cell(l.opType)) | "
            s += "\(AnalysisReport.format(g?.snr)) | \(AnalysisReport.format(g?.medianItemSNR)) | \(AnalysisReport.format(g?.cosine)) | \(AnalysisReport.format(l.layerwise?.snr)) | \(AnalysisReport.format(l.layerwise?.cosine)) | "
            s += "\(AnalysisReport.format(g?.mse)) | \(AnalysisReport.format(g?.mae)) | \(AnalysisReport.format(g?.maxAbsError)) | \(AnalysisReport.cell(l.advice.joined(separator: "; "))) |\n"
        }
        return s
    }

    /// "axis 1 channels 4-83 (float values up to 0.98): SNR 1, cosine 0.06".
    public static func describe(_ w: OutputSlice) -> String { "\(w.label): SNR \(format(w.snr)), cosine \(format(w.cosine))" }
}
