import Foundation
import QuantAlgorithms
import QuantCalibration
import QuantCore
import QuantData
import QuantExecutor
import QuantIR
import QuantRewrite

extension WeightOnlyQuantizer {
    /// The sites in data passes whose Hessians (8·K² bytes per site, as the collector keeps them)
    /// fit `budget` together, in graph order; the readers of one tensor share a pass (AWQ chooses
    /// per tensor). A tensor whose readers alone exceed the budget gets a pass of its own.
    static func passes(_ sites: [Node], graph: Graph, budget: Int) -> [[Node]] {
        var byInput: [String: [Node]] = [:], inputs: [String] = []
        for n in sites {
            if byInput[n.inputs[0]] == nil { inputs.append(n.inputs[0]) }
            byInput[n.inputs[0], default: []].append(n)
        }
        var out: [[Node]] = [], current: [Node] = [], bytes = 0
        for t in inputs {
            let unit = byInput[t]!
            let need = unit.reduce(0) { t, n in
                let k = graph.initializer(n.inputs[1])?.shape.first ?? 0
                return t + 8 * k * k
            }
            if !current.isEmpty && bytes + need > budget {
                out.append(current)
                current = []
                bytes = 0
            }
            current += unit
            bytes += need
        }
        if !current.isEmpty { out.append(current) }
        // Graph order within each pass (the rewrite and the record follow it).
        let rank = Dictionary(uniqueKeysWithValues: sites.enumerated().map { (ObjectIdentifier($1), $0) })
        return out.map { $0.sorted { rank[ObjectIdentifier($0)]! < rank[ObjectIdentifier($1)]! } }
    }
}

/// What a weight-only run wrote and did.
public struct WeightOnlyResult: Sendable {
    public var modelPath: String
    public var recordPath: String
    public var layers: [WeightOnly.Layer]
    public var options: WeightOnly.Options
    /// Bytes of the initializers before and after.
    public var bytesBefore: Int
    public var bytesAfter: Int
    public var calibrationItems = 0
    public var calibrationBatches = 0
    /// Per AWQ site: the input tensor and the α chosen.
    public var awq: [String: Double] = [:]
    public var warnings: [String] = []
}

/// `quantkit quantize --weight-only int4`: MatMul weights to ONNX Runtime's MatMulNBits, the
/// rest of the model unchanged. RTN needs no data; GPTQ and AWQ read the layer inputs of the
/// first calibration items (H = E[x xᵀ] per MatMul), from the float model.
public struct WeightOnlyQuantizer {
    public var configuration: QuantizerConfiguration

    public init(configuration: QuantizerConfiguration) { self.configuration = configuration }

    public static func recordPath(for output: String) -> String { Quantizer.parametersPath(for: output) }

    public func run(progress: (StageProgress) -> Void = { _ in }) throws -> WeightOnlyResult {
        let config = configuration
        guard let options = config.weightOnly, let path = config.model else {
            throw ConfigurationError.missing("model", fix: "give the .onnx model")
        }
        let output = config.output ?? Quantizer.defaultOutput(for: path)
        let model = try Model.load(path: path)
        try Verifier.check(model, codes: Verifier.loadCodes)
        try OutputSafety.check(outputs: [.init("the output model", output), .init("the weight-only record", WeightOnlyQuantizer.recordPath(for: output))],
                               inputs: [.init("the input model", path)] + model.externalFiles.map { .init("the model's external data", $0) })
        // Sites, their Hessians and passes go by node name: every node gets one of its own.
        _ = Preparation.nameNodes(model)
        let before = model.graph.initializers.reduce(0) { $0 + $1.tensor.byteCount }
        var result = WeightOnlyResult(modelPath: output, recordPath: WeightOnlyQuantizer.recordPath(for: output), layers: [], options: options,
                                      bytesBefore: before, bytesAfter: before)
        let sites = WeightOnly.sites(model.graph, blockSize: options.blockSize)
        let tables = options.embeddings ? WeightOnly.embeddingSites(model.graph, blockSize: options.blockSize) : []
        if sites.isEmpty && tables.isEmpty {
            result.warnings.append("no MatMul with a constant 2-D float weight of K >= \(options.blockSize): nothing to quantize")
        }
        if !tables.isEmpty && options.bits == 2 {
            result.warnings.append("\(tables.count) Gather embedding table(s) stay float: GatherBlockQuantized takes 4 or 8 bits")
        }
        var hessians: [String: WeightHessian] = [:]
        var rounding = options
        if rounding.rounding == .awq { rounding.rounding = .rtn }
        // GPTQ rounds each pass's layers as soon as their Hessians are in.
        let roundedInPasses = options.rounding == .gptq && !sites.isEmpty
        if options.rounding != .rtn && !sites.isEmpty {
            guard config.hasDataSource, let data = try config.resolvedData(for: CalibrationDataset.signatures(of: model.graph)) else {
                throw ConfigurationError.missing("calibration data for --weight-only with \(options.rounding.rawValue)",
                                                 fix: "give the data (`--input NAME=PATH`, token sequences for a decoder), or use rtn")
            }
            let floatModel = try Model.load(path: path)
            _ = Preparation.nameNodes(floatModel)
            let threads = config.threads ?? ProcessInfo.processInfo.activeProcessorCount
            let dataset = try CalibrationDataset(signatures: CalibrationDataset.signatures(of: floatModel.graph), config: data)
            let executor = try Executor(model: floatModel, options: ExecutorOptions(threads: threads))
            let passes = WeightOnlyQuantizer.passes(sites, graph: model.graph, budget: config.hessianMemory)
            // A model over 2 GB is mapped: each weight's pages go once its node has run.
            let release = MappedPageRelease(graph: floatModel.graph)
            var awq: (factors: [String: [Double]], readers: [String: [Double]]) = ([:], [:])
            for (index, pass) in passes.enumerated() {
                let names = Set(pass.map(\.name))
                let collector = WeightHessianCollector(graph: floatModel.graph, include: { names.contains($0.name) }, threads: threads)
                let stream = dataset.makeStream()
                defer { stream.cancel() }
                let stage = passes.count > 1 ? "layer inputs, pass \(index + 1) of \(passes.count)" : "layer inputs"
                var seen = 0, count = 0
                progress(StageProgress(stage: stage, done: 0, total: dataset.knownBatchCount, unit: "batches"))
                while seen < QuantizerConfiguration.weightRoundingSamples, let b = try stream.next() {
                    _ = try executor.run(b.tensors, hooks: release.isEmpty ? [collector] : [collector, release])
                    seen += b.tensors.values.first?.shape.first ?? 1
                    count += 1
                    progress(StageProgress(stage: stage, done: count, total: dataset.knownBatchCount, unit: "batches"))
                }
                guard count > 0 else { throw QuantKitError("QK4005", "calibration received no data", fix: "check the data paths; at least one batch is needed") }
                result.calibrationItems = seen
                result.calibrationBatches = count
                let h = collector.takeHessians()
                if options.rounding == .awq {
                    let (factors, alphas, readers) = AWQ.choose(model.graph, sites: pass, hessians: h, options: options)
                    awq.factors.merge(factors) { a, _ in a }
                    awq.readers.merge(readers) { a, _ in a }
                    result.awq.merge(alphas) { a, _ in a }
                    // One pass: the (scaled) Hessians stay for the output errors of the record.
                    if passes.count == 1 { hessians = h }
                } else {
                    // These layers are rounded and their Hessians dropped before the next pass.
                    result.layers += try WeightOnly.rewrite(model, options: rounding, hessians: h, only: names)
                }
            }
            if options.rounding == .awq {
                _ = try FloatTransforms(smoothing: awq.factors).apply(to: model)
                // x' = x / s: H' = diag(1/s) H diag(1/s) for every reader of a scaled input.
                hessians = AWQ.scaled(hessians, readers: awq.readers)
            }
        }
        if !roundedInPasses {
            result.layers = try WeightOnly.rewrite(model, options: rounding, hessians: hessians)
        } else if options.embeddings {
            result.layers += try WeightOnly.rewriteEmbeddings(model, options: rounding)
        }
        result.bytesAfter = model.graph.initializers.reduce(0) { $0 + $1.tensor.byteCount }
        try AtomicFile.makeDirectory(URL(fileURLWithPath: output).deletingLastPathComponent().path)
        let batch = AtomicBatch()
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try AtomicFile.write(try enc.encode(WeightOnlyRecord(model: URL(fileURLWithPath: path).lastPathComponent, options: options, layers: result.layers,
                                                              awq: result.awq.isEmpty ? nil : result.awq, warnings: result.warnings)),
                             to: result.recordPath, batch: batch)
        try model.save(to: output, batch: batch)
        try batch.commit()
        return result
    }
}

/// The record beside a weight-only model (`NAME.qparams.json`): options and per-layer errors.
public struct WeightOnlyRecord: Codable, Sendable {
    public var model: String
    public var weightOnly: WeightOnly.Options
    public var layers: [WeightOnly.Layer]
    public var awq: [String: Double]?
    public var warnings: [String]

    init(model: String, options: WeightOnly.Options, layers: [WeightOnly.Layer], awq: [String: Double]?, warnings: [String]) {
        self.model = model
        weightOnly = options
        self.layers = layers
        self.awq = awq
        self.warnings = warnings
    }
}
