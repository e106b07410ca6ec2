import Foundation
@_exported import QuantAlgorithms
@_exported import QuantRewrite

/// Everything a quantization run needs besides the model and data.
public struct QuantizerConfiguration: Codable, Sendable {
    public var scheme: QuantScheme
    public var control: QuantControl
    public var observer: ObserverOptions

    public init(scheme: QuantScheme = .u8s8, control: QuantControl = QuantControl(), observer: ObserverOptions = ObserverOptions()) {
        self.scheme = scheme
        self.control = control
        self.observer = observer
    }
}

/// What a quantization run produced.
public struct QuantizationResult: Sendable {
    public var modelPath: String
    public var parametersPath: String
    public var preparation: Preparation.Report
    public var quantizedNodes: Int
    public var floatNodes: Int
    public var absorbedActivations: Int
    public var warnings: [String]
}

/// Turns a float model into a QDQ model plus a parameter record.
public struct Quantizer {
    public var configuration: QuantizerConfiguration

    public init(configuration: QuantizerConfiguration) { self.configuration = configuration }

    /// `NAME.q.onnx` beside `NAME.onnx`.
    public static func defaultOutput(for model: String) -> String {
        let url = URL(fileURLWithPath: model)
        let stem = url.deletingPathExtension().lastPathComponent
        return url.deletingLastPathComponent().appendingPathComponent(stem + ".q.onnx").path
    }

    /// Quantizes the model at `modelPath` with activation ranges from `statistics` and writes
    /// `output` (QDQ ONNX) and `output` with `.qparams.json` instead of `.onnx`, each atomically.
    public func quantize(modelPath: String, statistics: StatisticsFile, output: String) throws -> QuantizationResult {
        if URL(fileURLWithPath: modelPath).standardizedFileURL == URL(fileURLWithPath: output).standardizedFileURL {
            throw QuantKitError("QK7001", "output '\(output)' is the input model", fix: "choose another output path; QuantKit never overwrites its input")
        }
        let model = try Model.load(path: modelPath)
        let prep = try Preparation.run(model)
        let stats = statistics.tensors
        let rewriter = QDQRewriter(model: model, options: .init(scheme: configuration.scheme, control: configuration.control) { name, grid, method in
            guard let e = stats[name] else { return nil }
            if e.statistics.absHistogram == nil, let r = e.range { return (r, e.method ?? "imported") }
            let sel = RangeSelection.select(e.statistics, method: method, grid: grid)
            return (sel.range, sel.method.description)
        })
        let r = try rewriter.run()
        try Verifier.check(model)
        let paramsPath = Quantizer.parametersPath(for: output)
        try model.save(to: output)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(ParameterRecord(model: URL(fileURLWithPath: modelPath).lastPathComponent, scheme: configuration.scheme,
                                                            tensors: r.parameters, warnings: r.warnings)), to: paramsPath)
        return QuantizationResult(modelPath: output, parametersPath: paramsPath, preparation: prep, quantizedNodes: r.quantizedNodes.count,
                                  floatNodes: r.floatNodes.count, absorbedActivations: r.absorbedActivations, warnings: r.warnings)
    }

    public static func parametersPath(for output: String) -> String {
        let url = URL(fileURLWithPath: output)
        var stem = url.deletingPathExtension().lastPathComponent
        if stem.hasSuffix(".q") { stem.removeLast(2) }
        return url.deletingLastPathComponent().appendingPathComponent(stem + ".qparams.json").path
    }
}

/// `NAME.qparams.json`: the scheme and every quantized tensor's parameters.
public struct ParameterRecord: Codable, Sendable {
    public var model: String
    public var scheme: QuantScheme
    public var tensors: [String: TensorQuantParameters]
    public var warnings: [String]
}
