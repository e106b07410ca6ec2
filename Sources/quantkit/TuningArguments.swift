import ArgumentParser
import Foundation
import QuantKit
import QuantTuning

/// The tuning loop's options of `quantize` (docs/CONFIG.md, "Tuning").
struct TuningArguments: ParsableArguments {
    @Option(help: "What the quantized model must reach, on every output and output slice: cosine=V, snr=V, mse=V, mae=V, distance=V (relative Euclidean), or metric>=V / metric<=V (the number --eval-command prints). When missed, the fewest ops (worst by their own error first) are raised to int16 activations, then float, and the model quantized again from the same statistics. Default cosine=0.99; none: the plain recipe, verified only.")
    var target: String?

    @Option(help: "tradeoff (default: ops to int16 activations, then float; the fewest that meet the target), accuracy (the same; the best value among the plans that meet it) or performance (float first, which costs ONNX Runtime only the op's own integer kernel; the fastest plan: --latency-command, else most integer kernels).")
    var priority: TuningPriority?

    @Option(help: "How ops are ranked for raising: variance (default: largest own noise/signal when quantized alone) or cosine (lowest own cosine).")
    var tuneStrategy: TuningStrategy?

    @Option(help: "Quantize-and-verify rounds the loop may spend after the first (default 8).")
    var tuneRounds: Int?

    @Option(help: "The share of the plain recipe's integer kernels (Conv/MatMul/Gemm in ONNX Runtime) a repaired plan must keep (default 0.8; 0 with --priority accuracy; 0: no limit).")
    var minIntegerShare: Double?

    @Flag(help: "Exit with an error (QK6007) when the target is not reached (the best model found is still written).")
    var strict = false

    @Option(help: "A command printing a model's latency in milliseconds as the last number of its output, with {model} for the path (e.g. '.venv/bin/python scripts/ort-latency.py {model}'); timed on every round.")
    var latencyCommand: String?

    /// The command line over the configuration file's settings (`cfg.tuning`).
    func apply(to cfg: inout QuantizerConfiguration, analysis: AnalysisArguments) throws {
        if let r = tuneRounds, r < 0 { throw ConfigurationError.invalidValue("--tune-rounds", "\(r)", expected: "0 or more rounds") }
        var o = cfg.tuning ?? TuningOptions()
        if let t = target { o.target = t.lowercased() == "none" ? nil : try TuningTarget(parsing: t) }
        if let p = priority { o.priority = p }
        if let s = tuneStrategy { o.strategy = s }
        if let r = tuneRounds { o.rounds = r }
        if let e = analysis.evalCommand { o.evalCommand = e }
        if let e = analysis.evalMetricsFile { o.evalMetricsFile = e }
        if let l = latencyCommand { o.latencyCommand = l }
        if let m = minIntegerShare { o.minIntegerShare = m }
        cfg.tuning = o
    }

    /// The loop's options, or nil when it does not run: no target (`--target none`), no
    /// analysis, no data (a statistics file alone), or --auto-keep-float. A target the user set
    /// (here or in the file) that cannot run is QK7004.
    func options(_ cfg: QuantizerConfiguration, analysis: AnalysisArguments, autoKeepFloat: Int) throws -> TuningOptions? {
        guard let o = cfg.tuning, let t = o.target else { return nil }
        let explicit = target != nil || (cfg.tuning != nil && cfg.tuning != TuningOptions(evalCommand: o.evalCommand, evalMetricsFile: o.evalMetricsFile, latencyCommand: o.latencyCommand))
        func refuse(_ why: String) throws -> TuningOptions? {
            if explicit { throw ConfigurationError.invalidValue("--target", "'\(t)'", expected: why) }
            return nil
        }
        if analysis.noAnalysis { return try refuse("the analysis to verify against (drop --no-analysis, or --target none)") }
        if !cfg.hasDataSource { return try refuse("calibration data to verify on (give --input; --stats alone has none)") }
        if autoKeepFloat > 0 { return try refuse("no --auto-keep-float (the loop chooses the ops itself)") }
        try o.validate()
        return o
    }

    static func missed(_ target: TuningTarget, _ best: Double) -> QuantKitError {
        QuantKitError("QK6007", "the quantized model does not reach the target \(target): the best plan found gives \(AnalysisReport.format(best)) (it is written, with the report's Tuning table)",
                      fix: "allow more rounds (--tune-rounds), raise straight to float (--priority accuracy), relax the target, or read the report's layers")
    }
}

extension TuningPriority: ExpressibleByArgument {}
extension TuningStrategy: ExpressibleByArgument {}
