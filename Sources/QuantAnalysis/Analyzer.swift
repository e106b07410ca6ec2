import Foundation
import QuantCalibration
import QuantCore
import QuantExecutor
import QuantIR

/// Settings of an error analysis.
public struct AnalysisOptions: Codable, Sendable {
    public var threads: Int
    /// Also measure each op alone (its inputs from the float model).
    public var layerwise: Bool
    /// A layer is marked when its SNR (noise/signal) exceeds this...
    public var snrWarning: Double
    /// ...or its cosine similarity is below this.
    public var cosineWarning: Double
    /// Histogram bins when activation histograms are collected during analysis.
    public var histogramBins: Int
    /// Bytes of float tensors one pass may keep for the comparison: a batch that needs more
    /// runs in parts (PP-OCRv4 rec keeps ~120 MB per 48×320 line; a batch of 8 at once took
    /// 1.3 GB).
    public var recordBudget: Int

    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, layerwise: Bool = true,
                snrWarning: Double = 0.1, cosineWarning: Double = 0.99, histogramBins: Int = 2048, recordBudget: Int = 256 << 20) {
        self.threads = threads
        self.layerwise = layerwise
        self.snrWarning = snrWarning
        self.cosineWarning = cosineWarning
        self.histogramBins = histogramBins
        self.recordBudget = recordBudget
    }
}

/// Measures, batch by batch, how far a QDQ model's tensors are from the float model's.
///
/// Per batch: one float pass records the tensors needed (quantized activations, the compared op
/// outputs, graph outputs); one pass of the QDQ model in QuantKit's executor gives the
/// graphwise error (quantization error accumulated through the model; DequantizeLinear → Conv →
/// QuantizeLinear groups computed as ONNX Runtime's integer QLinearConv, see
/// `ExecutorOptions.integerConv`); one more QDQ pass, whose
/// hook replaces every activation DequantizeLinear output by the fake-quantized *float* tensor,
/// gives the layerwise error (each op quantized alone, its inputs from the float model). Only the
/// sums of `ErrorAccumulator` outlive a batch.
public final class QuantAnalyzer {
    public let layout: QDQLayout
    public let options: AnalysisOptions
    let floatExecutor: Executor
    /// The QDQ model as ONNX Runtime's CPU provider runs it (integer QLinearConv groups), for
    /// the graphwise pass and the outputs.
    let quantExecutor: Executor
    /// The QDQ model node by node, for the layerwise pass: its hook replaces DequantizeLinear
    /// outputs, which an integer Conv would not read (nil without layerwise analysis).
    let layerExecutor: Executor?
    private(set) var graphwise: [String: ErrorAccumulator] = [:]
    private(set) var layerwise: [String: ErrorAccumulator] = [:]
    private(set) var outputs: [String: ErrorAccumulator] = [:]
    /// Per layer tensor, (float, quantized) value pairs sampled evenly from each batch (for the
    /// HTML report's histograms and scatter), interleaved, at most `ValueSamples.pairs`.
    public private(set) var valueSamples: [String: [Float]] = [:]
    /// Output name in the QDQ model → output name in the float model.
    let outputPairs: [(quant: String, float: String)]
    /// Float graph outputs that can be class scores (see `scoreProducers`).
    let scoreOutputs: Set<String>
    let collector: StatisticsCollector?
    /// QDQ-model tensor → the float model's name for it.
    let floatNames: [String: String]
    public private(set) var samples = 0
    public private(set) var batches = 0
    public private(set) var notes: [String] = []
    /// The graph outputs of the last batch, from the float model and from the QDQ model (by
    /// the QDQ model's output names), for evaluators that score them.
    public private(set) var lastOutputs: (float: [String: Tensor], quantized: [String: Tensor]) = ([:], [:])
    /// Whether every model input has a free first (batch) dimension, so a batch can run in parts.
    let splittable: Bool
    /// Items per pass once known: a batch runs in parts of this many items so that the float
    /// tensors kept for comparison stay within `options.recordBudget` bytes.
    public private(set) var itemsPerPass: Int?

    /// `collectHistograms`: observe the quantized activations of the float model during analysis
    /// (when no calibration statistics are at hand for the report's histograms).
    public init(floatModel: Model, quantizedModel: Model, options: AnalysisOptions = AnalysisOptions(), collectHistograms: Bool) throws {
        self.options = options
        splittable = floatModel.graph.runtimeInputs.allSatisfy { v in
            guard let d = v.tensorType?.shape?.first else { return false }
            if case .value = d { return false }
            return v.tensorType?.elementType != .string
        }
        let layout = try QDQLayout(model: quantizedModel)
        self.layout = layout
        let floatExecutor = try Executor(model: floatModel, options: ExecutorOptions(threads: options.threads))
        self.floatExecutor = floatExecutor
        quantExecutor = try Executor(model: quantizedModel, options: ExecutorOptions(threads: options.threads, integerConv: true))
        layerExecutor = options.layerwise ? try Executor(model: quantizedModel, options: ExecutorOptions(threads: options.threads)) : nil
        let fo = floatExecutor.outputNames, qo = quantExecutor.outputNames
        guard fo.count == qo.count else {
            throw QuantKitError("QK6001", "the float model has \(fo.count) outputs and the quantized model \(qo.count)",
                                fix: "analyze a quantized model made from this float model")
        }
        outputPairs = zip(qo, fo).map { q, f in (q, fo.contains(q) ? q : f) }
        let floatProducers = GraphIndex(floatModel.graph).producer
        scoreOutputs = Set(fo.filter { QuantAnalyzer.producesScores($0, producers: floatProducers) })
        // A QDQ tensor's float counterpart has its name, or (for a quantized graph output renamed
        // by the rewrite, `y_float -> Q -> DQ -> y`) the name of its DequantizeLinear output.
        var floatNames: [String: String] = [:]
        for t in Set(layout.activations.keys).union(layout.layers.map(\.tensor)) {
            if floatExecutor.id(of: t) != nil {
                floatNames[t] = t
            } else if let dq = layout.dequantizedOutputs[t]?.first(where: { floatExecutor.id(of: $0) != nil }) {
                floatNames[t] = dq
            }
        }
        self.floatNames = floatNames
        // Ops whose output the float model lacks: either it is quantized (not measured), or it
        // stays float inside a quantized region, e.g. the HardSigmoid of a hard-swish that
        // preparation wrote as x·HardSigmoid(x) (its error shows in the Mul that reads it).
        let missing = layout.layers.filter { floatNames[$0.tensor] == nil }
        let unmeasured = missing.filter { layout.activations[$0.tensor] != nil }
        let floatInside = missing.filter { layout.activations[$0.tensor] == nil }
        var notes: [String] = []
        if !unmeasured.isEmpty {
            notes.append("\(unmeasured.count) quantized ops produce tensors the float model does not have (e.g. '\(unmeasured[0].tensor)'); they are not measured")
        }
        if !floatInside.isEmpty {
            notes.append("\(floatInside.count) ops keep a float output the float model does not have (e.g. '\(floatInside[0].tensor)' of "
                         + "'\(floatInside[0].node)', such as the HardSigmoid of a hard-swish written as x·HardSigmoid(x)); their error is measured in the ops reading them")
        }
        collector = collectHistograms
            ? StatisticsCollector(tensors: Set(layout.activations.keys.compactMap { floatNames[$0] }), options: ObserverOptions(bins: options.histogramBins), threads: options.threads)
            : nil
        self.notes = notes
    }

    /// Names of the model inputs the QDQ model expects.
    public var inputNames: [String] { floatExecutor.inputNames }

    /// Adds one batch (a feed of every model input). A batch whose float tensors would exceed
    /// the memory budget runs in parts (items along the first dimension; the metrics are sums
    /// and per-item values, so they do not change).
    public func add(_ feeds: [String: Tensor]) throws {
        let items = feeds.values.first?.shape.first ?? 1
        let parts = splittable && items > 1 && feeds.values.allSatisfy { $0.rank >= 1 && $0.shape[0] == items }
        guard parts else {
            _ = try pass(feeds, items: items)
            samples += items
            batches += 1
            return
        }
        var start = 0
        var outputs: [(float: [String: Tensor], quantized: [String: Tensor])] = []
        while start < items {
            // The first pass of all runs one item and measures what it keeps.
            let n = min(itemsPerPass ?? 1, items - start)
            let part = n == items ? feeds : feeds.mapValues { $0.items(from: start, count: n) }
            let recorded = try pass(part, items: n)
            if itemsPerPass == nil { itemsPerPass = max(1, options.recordBudget / max(recorded, 1)) }
            outputs.append(lastOutputs)
            start += n
        }
        if outputs.count > 1 {
            func joined(_ key: KeyPath<(float: [String: Tensor], quantized: [String: Tensor]), [String: Tensor]>) -> [String: Tensor] {
                var d: [String: Tensor] = [:]
                for name in outputs[0][keyPath: key].keys {
                    let ts = outputs.compactMap { $0[keyPath: key][name] }
                    if ts.count == outputs.count, let t = Tensor.joined(ts) { d[name] = t }
                }
                return d
            }
            lastOutputs = (joined(\.float), joined(\.quantized))
        }
        samples += items
        batches += 1
    }

    /// Runs the three passes over `feeds` (`items` samples) and adds their errors; returns the
    /// bytes of float tensors kept for the comparison.
    func pass(_ feeds: [String: Tensor], items: Int) throws -> Int {
        let recorder = Recorder(ids: Dictionary(Set(floatNames.values).compactMap { n in floatExecutor.id(of: n).map { ($0, n) } }, uniquingKeysWith: { a, _ in a }))
        let floatOut = try floatExecutor.run(feeds, hooks: [recorder] + (collector.map { [$0] } ?? []))
        let reference = floatNames.compactMapValues { recorder.values[$0] }
        let quantFeeds = feeds.filter { quantExecutor.inputNames.contains($0.key) }

        let graphHook = Comparer(layout: layout, targets: targetIDs(quantExecutor), reference: reference, replace: [:], items: items)
        graphHook.samplePairs = ValueSamples.perItem * items
        let quantOut = try quantExecutor.run(quantFeeds, hooks: [graphHook])
        merge(graphHook.accumulators, into: &graphwise)
        for (name, pairs) in graphHook.samples {
            let room = 2 * ValueSamples.pairs - valueSamples[name, default: []].count
            if room > 0 { valueSamples[name, default: []] += pairs.prefix(room) }
        }
        lastOutputs = (Dictionary(uniqueKeysWithValues: outputPairs.compactMap { p in floatOut[p.float].map { (p.quant, $0) } }), quantOut)
        for (q, f) in outputPairs {
            guard let r = floatOut[f], let t = quantOut[q] else { continue }
            var acc = outputs[q] ?? ErrorAccumulator(classScores: scoreOutputs.contains(f) && ErrorAccumulator.looksLikeClassScores(r.shape),
                                                     probabilityMap: ErrorAccumulator.looksLikeProbabilityMap(r), sliced: true)
            acc.add(reference: r, test: t, items: items, threads: options.threads)
            outputs[q] = acc
        }
        if let layerExecutor {
            var replace: [ValueID: String] = [:]
            for (dq, src) in layout.dequantizedActivations where reference[src] != nil {
                if let id = layerExecutor.id(of: dq) { replace[id] = src }
            }
            let layerHook = Comparer(layout: layout, targets: targetIDs(layerExecutor), reference: reference, replace: replace, items: items)
            _ = try layerExecutor.run(quantFeeds, hooks: [layerHook])
            merge(layerHook.accumulators, into: &layerwise)
        }
        return recorder.values.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.byteCount } }
    }

    /// Statistics of the quantized activations observed during analysis (nil when not collected).
    public var observedStatistics: [String: TensorStatistics]? { collector?.statistics }

    func targetIDs(_ executor: Executor) -> [ValueID: String] {
        var d: [ValueID: String] = [:]
        for l in layout.layers { if let id = executor.id(of: l.tensor) { d[id] = l.tensor } }
        return d
    }

    func merge(_ part: [String: ErrorAccumulator], into total: inout [String: ErrorAccumulator]) {
        for (k, v) in part {
            var acc = total[k] ?? ErrorAccumulator()
            acc.merge(v)
            total[k] = acc
        }
    }

    /// Metrics per layer tensor (graphwise, layerwise) and per graph output.
    public var metrics: (graphwise: [String: TensorErrorMetrics], layerwise: [String: TensorErrorMetrics], outputs: [String: TensorErrorMetrics]) {
        (graphwise.mapValues(\.metrics), layerwise.mapValues(\.metrics), outputs.mapValues(\.metrics))
    }

    /// The graph outputs of the QDQ model in order.
    public var outputNames: [String] { outputPairs.map(\.quant) }

    /// Ops whose output can be class scores or logits: an argmax of what they compute names a
    /// class. Not LSTM/If states, LayerNormalization or Concat outputs (silero VAD's [2, 1, 128]
    /// state, MiniLM-L3's hidden states), whose shapes alone look like [N, T, C] scores.
    static let scoreProducers: Set<String> = ["Softmax", "LogSoftmax", "Sigmoid", "Gemm", "MatMul", "Add", "Conv",
                                              "GlobalAveragePool", "AveragePool", "ReduceMean"]

    /// Whether graph output `name` comes (through reshaping ops) from a `scoreProducers` op.
    static func producesScores(_ name: String, producers producer: [String: Node]) -> Bool {
        var value = name
        for _ in 0..<8 {
            guard let n = producer[value], n.isStandard else { return false }
            if ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose"].contains(n.opType), let x = n.inputs.first {
                value = x
                continue
            }
            // A softmax written out as Exp(x) / ReduceSum(Exp(x)) (Magika's jax2tf export).
            if n.opType == "Div", let e = n.inputs.first.flatMap({ producer[$0] }), e.isStandard, e.opType == "Exp" { return true }
            return scoreProducers.contains(n.opType)
        }
        return false
    }
}

/// Keeps the float tensors of chosen values for the batch, each in the order produced (a value
/// inside a Loop/Scan body once per iteration).
final class Recorder: ExecutionHook {
    let ids: [ValueID: String]
    var values: [String: [Tensor]] = [:]
    init(ids: [ValueID: String]) { self.ids = ids }

    func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        if let n = ids[value], tensor.dtype == .float { values[n, default: []].append(tensor) }
        return nil
    }
}

/// Compares the QDQ model's layer tensors (fake-quantized as the next op reads them) with the
/// float model's, and optionally replaces activation DequantizeLinear outputs by the
/// fake-quantized float tensor (layerwise mode).
/// The n-th production of a value is compared with the float model's n-th (Loop/Scan
/// iterations pair up; the last one stands in if the runs differ in length).
final class Comparer: ExecutionHook {
    let layout: QDQLayout
    let targets: [ValueID: String]
    let reference: [String: [Tensor]]
    let replace: [ValueID: String]
    /// Samples in the batch, for the per-item SNRs.
    let items: Int
    var accumulators: [String: ErrorAccumulator] = [:]
    /// Pairs to sample per target tensor (0: none); `samples` holds them interleaved.
    var samplePairs = 0
    var samples: [String: [Float]] = [:]
    private var occurrences: [ValueID: Int] = [:]

    init(layout: QDQLayout, targets: [ValueID: String], reference: [String: [Tensor]], replace: [ValueID: String], items: Int) {
        self.layout = layout
        self.targets = targets
        self.reference = reference
        self.replace = replace
        self.items = items
    }

    func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        let k = occurrences[value, default: 0]
        occurrences[value] = k + 1
        func ref(_ name: String) -> Tensor? { reference[name].flatMap { $0.isEmpty ? nil : $0[min(k, $0.count - 1)] } }
        if let src = replace[value], let r = ref(src), let q = layout.activations[src] {
            return q.fakeQuantize(r, threads: executor.options.threads)
        }
        if let name = targets[value], let r = ref(name) {
            let t = layout.activations[name]?.fakeQuantize(tensor, threads: executor.options.threads) ?? tensor
            var acc = accumulators[name] ?? ErrorAccumulator()
            acc.add(reference: r, test: t, items: items, threads: executor.options.threads)
            accumulators[name] = acc
            if samplePairs > 0, k == 0, r.count == t.count, r.count > 0 {
                samples[name] = ValueSamples.evenly(reference: r, test: t, pairs: samplePairs)
            }
        }
        return nil
    }
}

extension ErrorAccumulator {
    /// Adds another accumulator's sums (the union of both data sets).
    public mutating func merge(_ o: ErrorAccumulator) {
        if o.count > 0 {
            if count == 0 {
                slices = o.slices
            } else if let theirs = o.slices, slices != nil {
                slices!.merge(theirs)
                if slices!.axes.isEmpty { slices = nil }
            } else {
                slices = nil
            }
        }
        sliced = sliced || o.sliced
        count += o.count; signal += o.signal; noise += o.noise; dot += o.dot; testPower += o.testPower
        itemSNRs += o.itemSNRs
        absSum += o.absSum; maxAbs = Swift.max(maxAbs, o.maxAbs); rows += o.rows; agreeingRows += o.agreeingRows
        maskIntersection += o.maskIntersection; maskUnion += o.maskUnion
        classScores = classScores || o.classScores
        probabilityMap = probabilityMap || o.probabilityMap
    }
}

/// Value pairs for the report's per-op histograms and scatter plots: a fixed number per item,
/// evenly spaced over the tensor, so that the report's size does not grow with the data.
public enum ValueSamples {
    /// Pairs kept per layer tensor over the whole analysis.
    public static let pairs = 256
    /// Pairs taken from each item of a batch.
    static let perItem = 32

    /// `pairs` (float, quantized) values at evenly spaced positions, interleaved.
    static func evenly(reference: Tensor, test: Tensor, pairs: Int) -> [Float] {
        let r = reference.dtype == .float ? reference : Tensor(shape: reference.shape, floats: reference.floats())
        let t = test.dtype == .float ? test : Tensor(shape: test.shape, floats: test.floats())
        let n = min(pairs, r.count)
        var out = [Float](repeating: 0, count: 2 * n)
        r.withUnsafeBufferPointer(as: Float.self) { rp in
            t.withUnsafeBufferPointer(as: Float.self) { tp in
                for i in 0..<n {
                    let j = Int((Double(i) + 0.5) * Double(rp.count) / Double(n))
                    out[2 * i] = rp[j]
                    out[2 * i + 1] = tp[j]
                }
            }
        }
        return out
    }
}
