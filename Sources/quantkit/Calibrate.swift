import ArgumentParser
import Foundation
import QuantData
import QuantKit

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the float model over calibration data and write activation statistics and ranges.",
        discussion: """
            One pass collects, per tensor, min/max, batch averages, moments and histograms of x and |x| \
            in memory independent of the number of samples. The statistics file can be given to \
            `quantkit quantize --stats` to skip calibration, and files of data shards merge: \
            `quantkit calibrate --merge a.json b.json --stats-out all.json`.
            Methods: \(RangeMethod.names.joined(separator: ", ")).
            """)

    @Argument(help: "The float .onnx model (not needed with --merge).")
    var model: String?

    @OptionGroup var data: DataArguments

    @OptionGroup var calibration: CalibrationArguments





    @Option(help: "Where to write the statistics (JSON).")
    var statsOut: String

    @Option(parsing: .upToNextOption, help: "Merge these statistics files instead of calibrating.")
    var merge: [String] = []




    func run() throws {
        try reportingErrors {
            let c = calibration
            let (method, grid) = try CalibrationChoice.parse(method: c.method ?? "default", percentile: c.percentile ?? 0.9999, activations: c.activations ?? "u8")
            var file: StatisticsFile
            if !merge.isEmpty {
                try OutputSafety.check(outputs: [.init("--stats-out", statsOut)], inputs: merge.map { .init("merged statistics file", $0) })
                file = try merge.dropFirst().reduce(try StatisticsFile.read(path: merge[0])) { try StatisticsFile.merged($0, StatisticsFile.read(path: $1)) }
            } else {
                guard let model else { throw QuantKitError("QK7022", "calibrate needs a model (or --merge FILES)", fix: "pass the .onnx model as the first argument") }
                if let a = c.smoothquant {
                    throw ConfigurationError.notImplemented("calibrate --smoothquant", a,
                        detail: "SmoothQuant's factors come from a pass of their own before calibration; run `quantkit quantize MODEL --input ... --smoothquant \(a) --stats-out FILE`, which writes the statistics of the smoothed model with its factors")
                }
                try ConfigurationError.checkBins(c.bins ?? 2048)
                file = try CalibrationChoice.calibrate(model: model, data: data, bins: c.bins ?? 2048, threads: c.threads ?? ProcessInfo.processInfo.activeProcessorCount,
                                                       reporter: c.reporter, output: statsOut, transforms: FloatTransforms(equalize: c.equalize ?? false))
            }
            Calibrator.selectRanges(&file, method: method, grid: grid)
            try file.write(to: statsOut)
            if !c.quiet { print("statistics of \(file.tensors.count) tensors over \(file.samples) samples -> \(statsOut)") }
        }
    }
}

/// Calibration options shared by `calibrate` and `quantize`. Unset options keep the value of a
/// configuration file (quantize -c) or the default named in the help.
struct CalibrationArguments: ParsableArguments {
    @Option(help: "Range method for activations: \(RangeMethod.names.joined(separator: ", ")) (default: default; XQuant calibration_type, Icraft saturation).")
    var method: String?

    @Option(help: "Percentile for --method percentile (default 0.9999; XQuant max_percentile).")
    var percentile: Double?

    @Option(help: "Activation scheme: u8 (uint8 asymmetric, the default), s8 (int8 symmetric), u16 (uint16 asymmetric), s16 (int16 symmetric), Distiller's asym_u (= u8), asym_s (int8 with a zero point), sym (= s8); weights int8 (XQuant activations, Icraft qdtype); or float8 e4m3fn, e5m2 for activations and weights (opset 19).")
    var activations: String?

    @Option(help: "Histogram bins (default 2048; Icraft bin_num, e.g. 4096).")
    var bins: Int?

    @Flag(inversion: .prefixedNo, help: "Cross-layer equalization (Nagel et al. 2019) of Conv -> Relu/Relu6/nothing -> Conv chains before calibrating: per-channel weight ranges of each pair matched, float outputs unchanged; for per-tensor weights above all (XQuant/Icraft `equalization`). Statistics files record it: calibrate and quantize with the same setting.")
    var equalize: Bool?

    @Option(help: "SmoothQuant (Xiao et al. 2023) before calibrating: ALPHA in [0, 1] for every MatMul/Gemm input (0.5 is the paper's default), or auto (α per input chosen on its layer's output error, no smoothing where that is best); the factors fold into LayerNorm/Mul/MatMul producers or an explicit float Mul. Icraft smooth_alpha. Statistics files record the factors.")
    var smoothquant: String?

    func smoothQuantAlpha() throws -> SmoothQuant.Alpha? {
        guard let t = smoothquant else { return nil }
        guard let a = SmoothQuant.Alpha(t) else { throw ConfigurationError.invalidValue("--smoothquant", "'\(t)'", expected: "auto or a number in [0, 1], e.g. 0.5") }
        return a
    }

    @Option(help: "Threads (default: every core).")
    var threads: Int?

    @Flag(help: "No progress output.")
    var quiet = false

    @Flag(help: "Progress as JSON lines on stderr.")
    var logJson = false

    var reporter: ProgressReporter { ProgressReporter(quiet: quiet, json: logJson) }
}

/// Shared by `calibrate` and `quantize`.
enum CalibrationChoice {
    static func parse(method: String, percentile: Double, activations: String) throws -> (RangeMethod, QuantGrid) {
        guard let m = RangeMethod(name: method, percentile: percentile) else { throw ConfigurationError.unknownMethod(method, key: "--method") }
        return (m, try scheme(activations).activation)
    }

    static func scheme(_ activations: String) throws -> QuantScheme {
        try QuantizerConfiguration.scheme(named: activations, key: "--activations")
    }

    /// Streams the data through the float model with statistics observers.
    /// Streams the data through the float model with statistics observers; `output` (the file
    /// the statistics go to) must be none of the files read.
    static func calibrate(model path: String, data: DataArguments, bins: Int, threads: Int, reporter: ProgressReporter,
                          output: String? = nil, transforms: FloatTransforms = FloatTransforms()) throws -> StatisticsFile {
        let model = try Quantizer.loadForCalibration(path: path, transforms: transforms)
        let (signatures, cfg) = try DataPreviewOptions(model: path, data: data).resolve()
        let dataset = try CalibrationDataset(signatures: signatures, config: cfg)
        if let output {
            try OutputSafety.check(outputs: [.init("--stats-out", output)],
                                   inputs: [.init("the input model", path)] + model.externalFiles.map { .init("the model's external data", $0) }
                                       + dataset.sourceFiles.map { .init("calibration file", $0) } + (data.config.map { [.init("--data-config", $0)] } ?? []))
        }
        let stream = dataset.makeStream()
        defer { stream.cancel() }
        let total = dataset.knownBatchCount
        let calibrator = Calibrator(observer: ObserverOptions(bins: bins), threads: threads)
        var file = try calibrator.run(model: model, modelName: URL(fileURLWithPath: path).lastPathComponent, total: total,
                                      dataset: dataset, stream: stream, progress: reporter.report)
        file.transforms = transforms.isEmpty ? nil : transforms
        for w in dataset.report.warnings { FileHandle.standardError.write(Data("warning: \(w.code) \(w.message)\n".utf8)) }
        return file
    }
}
