import Foundation
import QuantCalibration
import QuantCore
import QuantIR

/// Everything an analysis found, for scripts (JSON) and the Markdown and HTML renderers.
public struct AnalysisReport: Codable, Sendable {
    public struct Layer: Codable, Sendable {
        /// Position among the quantized ops, in graph order (1-based).
        public var index: Int
        public var node: String
        public var opType: String
        public var tensor: String
        /// The float tensors the op reads quantized: with `tensor`, its region for
        /// `--subgraph IN:OUT:SETTING`.
        public var inputs: [String]
        public var graphwise: TensorErrorMetrics?
        public var layerwise: TensorErrorMetrics?
        public var weightType: String?
        public var weightPerChannel: Bool?
        /// The activation grid of the measured tensor (e.g. uint8), when it is quantized.
        public var activationType: String?
        public var marked: Bool
        /// Short suggestions for a marked layer.
        public var advice: [String]
    }

    public struct Output: Codable, Sendable {
        public var name: String
        public var metrics: TensorErrorMetrics

        public init(name: String, metrics: TensorErrorMetrics) {
            self.name = name
            self.metrics = metrics
        }
    }

    /// A quantized activation's histogram (from calibration statistics) and chosen range.
    public struct ActivationHistogram: Codable, Sendable {
        public var tensor: String
        /// Left edge of the first bin and the bin width.
        public var lo: Double
        public var binWidth: Double
        public var counts: [Double]
        public var clipLo: Double
        public var clipHi: Double
        public var min: Double
        public var max: Double
    }

    public struct ModelOverview: Codable, Sendable {
        public var floatNodes: Int
        public var quantizedModelNodes: Int
        public var quantizedOps: Int
        public var quantizedActivations: Int
        public var quantizedWeights: Int
        public var opTypes: [String: Int]
        public var parameters: Int
        public var inputs: [String]
        public var outputs: [String]
        /// Which Conv/MatMul/Gemm of the quantized model ONNX Runtime runs as integer kernels.
        public var integerKernels: RuntimeFusion.Summary?
    }

    /// A user metric on both models (`--eval-command`) or the built-in classifier's accuracy.
    public struct Evaluation: Codable, Sendable {
        public var name: String
        public var float: Double
        public var quantized: Double
        /// |quantized − float| / |float| × 100.
        public var quantizationLoss: Double

        public init(name: String, float: Double, quantized: Double) {
            self.name = name
            self.float = float
            self.quantized = quantized
            quantizationLoss = float != 0 ? abs(quantized - float) / abs(float) * 100 : (quantized == float ? 0 : .infinity)
        }
    }

    /// What a tuning loop (`quantize --target`) tried: one round per quantized candidate.
    public struct Tuning: Codable, Sendable {
        public struct Round: Codable, Sendable {
            /// 0: the plain recipe (or the plan given).
            public var round: Int
            /// What changed against the plan the loop started from, e.g. "int16: 4 ops (a, b, ...)".
            public var change: String
            /// The ops raised (node names).
            public var raised: [String]
            /// The target metric measured on this round's model.
            public var value: Double
            public var met: Bool
            public var integerKernels: Int
            public var kernels: Int
            /// Milliseconds from the latency command, when given.
            public var latencyMs: Double?
            public var seconds: Double

            public init(round: Int, change: String, raised: [String], value: Double, met: Bool, integerKernels: Int, kernels: Int,
                        latencyMs: Double? = nil, seconds: Double) {
                self.round = round
                self.change = change
                self.raised = raised
                self.value = value
                self.met = met
                self.integerKernels = integerKernels
                self.kernels = kernels
                self.latencyMs = latencyMs
                self.seconds = seconds
            }
        }

        /// e.g. "cosine >= 0.99 (every output and output slice)".
        public var target: String
        public var met: Bool
        /// The round whose plan the written model uses.
        public var chosen: Int
        public var rounds: [Round]

        public init(target: String, met: Bool, chosen: Int, rounds: [Round]) {
            self.target = target
            self.met = met
            self.chosen = chosen
            self.rounds = rounds
        }
    }

    /// A table the quantizer adds about what it did (equalization pairs, SmoothQuant sites,
    /// AdaRound layers), rendered as it is.
    public struct Section: Codable, Sendable {
        public var title: String
        public var text: String
        public var columns: [String]
        public var rows: [[String]]

        public init(title: String, text: String, columns: [String], rows: [[String]]) {
            self.title = title
            self.text = text
            self.columns = columns
            self.rows = rows
        }
    }

    public var version = 1
    public var floatModel: String
    public var quantizedModel: String
    public var samples: Int
    public var batches: Int
    public var snrWarning: Double
    public var cosineWarning: Double
    public var model: ModelOverview
    public var outputs: [Output]
    public var layers: [Layer]
    public var histograms: [ActivationHistogram]
    public var evaluations: [Evaluation] = []
    public var notes: [String]
    /// Error-level findings, worst first: outputs (or output slices) over the warning levels
    /// (QK6006), and the quantizer's QK5003/QK5004 when the analysis follows `quantize`.
    public var findings: [String] = []
    /// The tuning loop's rounds, when one ran.
    public var tuning: Tuning?
    /// What the accuracy-recovery algorithms did (from the parameter record beside the model).
    public var recovery: [Section]? = nil
    // What the HTML report draws per op; not in the JSON report.
    /// The quantized model's ops as the diagram draws them.
    public var graph: [GraphNode] = []
    /// Per layer tensor, (float, quantized) value pairs sampled over the analysis data, interleaved.
    public var valueSamples: [String: [Float]] = [:]
    /// Per quantized activation tensor, its clipping range [lo, hi].
    public var clipRanges: [String: [Double]] = [:]
    /// Per quantized tensor, the range method that chose its range (from the parameter record).
    public var rangeMethods: [String: String] = [:]

    /// Conv/ConvTranspose/Gemm/MatMul ops by their own (layerwise) error, worst first: what
    /// `quantize --auto-keep-float N` keeps float. Data-movement and element-wise ops are left
    /// out, since keeping one float leaves the quantized tensor it shares or reads in place.
    public var computeOpsWorstByThemselves: [Layer] {
        let compute: Set<String> = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
        return layers.filter { compute.contains($0.opType) && ($0.layerwise?.snr ?? 0) > 0 }
            .sorted { ($0.layerwise!.snr, $1.node) > ($1.layerwise!.snr, $0.node) }
    }

    /// Marked layers whose own (layerwise) error is over a threshold; the other marked layers
    /// only carry error from above.
    public var markedByThemselves: [Layer] {
        layers.filter { l in
            guard l.marked, let m = l.layerwise else { return false }
            return m.snr > snrWarning || m.cosine < cosineWarning || (m.medianItemSNR ?? 0) > snrWarning
        }
    }

    /// Layers worst first by their own error: layerwise SNR when measured, else graphwise.
    public var worstLayers: [Layer] {
        layers.filter { $0.graphwise != nil }.sorted { ($0.layerwise?.snr ?? $0.graphwise?.snr ?? 0) > ($1.layerwise?.snr ?? $1.graphwise?.snr ?? 0) }
    }

    enum CodingKeys: String, CodingKey {
        case version, floatModel, quantizedModel, samples, batches, snrWarning, cosineWarning, model, outputs, layers, histograms, evaluations, notes, findings, tuning, recovery
    }
}

extension AnalysisReport {
    /// Builds the report from a finished analysis. `statistics` supplies the activation
    /// histograms (calibration statistics; else those observed during analysis, if any).
    public init(analyzer a: QuantAnalyzer, floatModel: Model, quantizedModel: Model, floatName: String, quantizedName: String,
                statistics: [String: TensorStatistics]? = nil, histogramBins: Int = 64) {
        let m = a.metrics
        let o = a.options
        // The median item counts too: a layer fine over all items (loud ones dominate the sums)
        // can be bad on most items (quiet ones).
        func badOverall(_ m: TensorErrorMetrics) -> Bool { m.snr > o.snrWarning || m.cosine < o.cosineWarning }
        func badOnMedianItem(_ m: TensorErrorMetrics) -> Bool { (m.medianItemSNR ?? 0) > o.snrWarning }
        func bad(_ x: TensorErrorMetrics?) -> Bool { x.map { badOverall($0) || badOnMedianItem($0) } ?? false }
        func quietOnly(_ x: TensorErrorMetrics?) -> Bool { x.map { !badOverall($0) && badOnMedianItem($0) } ?? false }
        var layers: [Layer] = []
        // The first op above that is bad by itself (layerwise), which an op fine by itself but
        // bad in the whole model should be traced to.
        var firstBadAlone: String? = nil
        for l in a.layout.layers {
            let g = m.graphwise[l.tensor], lw = m.layerwise[l.tensor]
            guard g != nil else { continue }
            let act = a.layout.activations[l.tensor]
            let marked = bad(g) || bad(lw)
            var advice: [String] = []
            if marked {
                if lw != nil, !bad(lw) {
                    if let culprit = firstBadAlone {
                        advice.append("error comes from earlier layers: fix `\(culprit)` (bad by itself) first")
                    } else {
                        // No op above is bad alone: small errors add up (EfficientNet-Lite0:
                        // mostly weight rounding, docs/BENCHMARKS.md error budget).
                        // They do not help every model: PP-OCRv4 rec reads fewer lines with them.
                        advice.append("error accumulated over the layers above, none bad by itself: try rounding-aware weights (--weight-rounding gptq --bias-correction all) and keep them if your task metric improves")
                    }
                } else {
                    if l.weightPerChannel == false { advice.append("per-channel weights") }
                    advice.append("other range method (--method mse or percentile)")
                    if let act, act.dtype.bitWidth <= 8 {
                        // The op's own region: its activation inputs to the tensor measured.
                        advice.append(l.activationInputs.isEmpty ? "16-bit activations (--activations u16)"
                                      : "16-bit activations here (--subgraph \(l.activationInputs.joined(separator: ",")):\(l.tensor):bits=16)")
                    }
                    advice.append("keep float (--exclude-node \(l.node))")
                }
            }
            if firstBadAlone == nil, bad(lw ?? g) { firstBadAlone = l.node }
            layers.append(Layer(index: layers.count + 1, node: l.node, opType: l.opType, tensor: l.tensor, inputs: l.activationInputs,
                                graphwise: g, layerwise: lw,
                                weightType: l.weightType, weightPerChannel: l.weightPerChannel, activationType: act?.dtype.name,
                                marked: marked, advice: advice))
        }
        var notes = a.notes
        let quiet = layers.filter { quietOnly($0.graphwise) || quietOnly($0.layerwise) }
        if !quiet.isEmpty {
            notes.append("\(quiet.count) layer(s) look fine over all items but not on the median item (their error is large on quiet inputs, "
                         + "which the overall SNR, dominated by loud inputs, hides); e.g. "
                         + quiet.prefix(3).map { "'\($0.node)' (SNR \(AnalysisReport.format($0.graphwise?.snr)), median item \(AnalysisReport.format($0.graphwise?.medianItemSNR)))" }.joined(separator: ", "))
        }
        var histograms: [ActivationHistogram] = []
        let stats = statistics ?? a.observedStatistics ?? [:]
        var seen = Set<String>()
        for name in a.layout.layers.flatMap({ $0.activationInputs + [$0.tensor] }) where seen.insert(name).inserted {
            guard let q = a.layout.activations[name], let s = stats[name] ?? a.floatNames[name].flatMap({ stats[$0] }),
                  let h = s.histogram, h.bins > 0 else { continue }
            let clip = q.clipRange
            let k = max(1, (h.bins + histogramBins - 1) / histogramBins)
            histograms.append(ActivationHistogram(tensor: name, lo: h.lo, binWidth: h.width * Double(k), counts: AnalysisReport.rebin(h.counts, by: k),
                                                  clipLo: clip.lo, clipHi: clip.hi, min: s.min, max: s.max))
        }
        var ops: [String: Int] = [:]
        for n in floatModel.graph.nodes { ops[n.opType, default: 0] += 1 }
        let params = floatModel.graph.initializers.reduce(0) { $0 + $1.tensor.count }
        let overview = ModelOverview(
            floatNodes: floatModel.graph.nodes.count, quantizedModelNodes: quantizedModel.graph.nodes.count,
            quantizedOps: a.layout.layers.count, quantizedActivations: a.layout.activations.count, quantizedWeights: a.layout.weightTensors,
            opTypes: ops, parameters: params,
            inputs: floatModel.graph.runtimeInputs.map { AnalysisReport.describe($0) }, outputs: floatModel.graph.outputs.map { AnalysisReport.describe($0) },
            integerKernels: RuntimeFusion.summary(of: quantizedModel))
        let outputs = a.outputNames.compactMap { n in m.outputs[n].map { Output(name: n, metrics: $0) } }
        self.init(floatModel: floatName, quantizedModel: quantizedName, samples: a.samples, batches: a.batches,
                  snrWarning: o.snrWarning, cosineWarning: o.cosineWarning, model: overview,
                  outputs: outputs, layers: layers, histograms: histograms, notes: notes,
                  findings: outputs.compactMap { AnalysisReport.outputFinding($0, snrWarning: o.snrWarning, cosineWarning: o.cosineWarning) })
        graph = AnalysisReport.diagram(of: quantizedModel, layers: layers)
        valueSamples = a.valueSamples
        for (name, q) in a.layout.activations where q.scales.count == 1 {
            let r = q.clipRange
            clipRanges[name] = [r.lo, r.hi]
        }
    }

    /// The error-level finding (QK6006) for an output over the warning levels, as a whole or in
    /// its worst slice (channels of another magnitude: a detector's scores beside its boxes).
    public static func outputFinding(_ o: Output, snrWarning: Double, cosineWarning: Double) -> String? {
        let m = o.metrics, f = AnalysisReport.format
        var misses: [String] = []
        if m.bad(snrWarning: snrWarning, cosineWarning: cosineWarning) {
            let whole = "SNR \(f(m.snr)), cosine \(f(m.cosine))"
            if let w = m.worstSlice, !(w.snr <= snrWarning && w.cosine >= cosineWarning) {
                misses.append("\(w.label): SNR \(f(w.snr)), cosine \(f(w.cosine)) (the whole output: \(whole))")
            } else {
                misses.append(whole)
            }
            misses[0] += " against warning levels SNR \(f(snrWarning)), cosine \(f(cosineWarning))"
        }
        // Class scores whose arg-max changes on more than 1 in 100 rows: the classifier's answer
        // moves even when the scores' SNR looks small (EfficientNet-Lite0: SNR 0.014, top-1 0.875).
        if let a = m.top1Agreement, a < AnalysisReport.minTop1Agreement {
            misses.append("top-1 agreement \(f(a)) (under \(f(AnalysisReport.minTop1Agreement)))")
        }
        guard !misses.isEmpty else { return nil }
        return "QK6006 error: output '\(o.name)' is far from float: " + misses.joined(separator: "; ")
            + ". Read the marked layers of the report (the first one bad by itself is where to start), or run `quantkit quantize ... --auto-keep-float N`"
    }

    /// Top-1 agreement with float below this is a finding (one point of a classifier's accuracy).
    public static let minTop1Agreement = 0.99

    static func describe(_ v: ValueInfo) -> String {
        let t = v.tensorType
        let shape = t?.shape.map { "[" + $0.map(\.description).joined(separator: ",") + "]" } ?? "?"
        return "\(v.name): \(t?.elementType?.name ?? "?") \(shape)"
    }

    /// Sums each run of `k` neighbouring bins.
    static func rebin(_ c: [Double], by k: Int) -> [Double] {
        guard k > 1 else { return c }
        return stride(from: 0, to: c.count, by: k).map { c[$0..<min($0 + k, c.count)].reduce(0, +) }
    }

    /// JSON with sorted keys; infinities and NaN as strings.
    public func json() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try enc.encode(self)
    }

    public static func decode(_ data: Data) throws -> AnalysisReport {
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try dec.decode(AnalysisReport.self, from: data)
    }
}
