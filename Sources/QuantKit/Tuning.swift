import Foundation
import QuantAnalysis

/// What a tuning loop must reach, measured on every model output (and every output slice of
/// another magnitude, ``OutputSlice``): its worst value counts.
public struct TuningTarget: Codable, Sendable, Equatable, CustomStringConvertible {
    public enum Metric: String, Codable, Sendable, CaseIterable {
        /// Cosine similarity with float (higher is better); Icraft `cos_targetvalue`.
        case cosine
        /// Noise/signal power ratio (lower is better).
        case snr
        /// Mean squared error (lower is better); Icraft `mse_targetvalue`.
        case mse
        /// Mean absolute error (lower is better); Icraft `mae_targetvalue`.
        case mae
        /// Relative Euclidean distance ‖q − f‖ / ‖f‖ (lower is better); Icraft `dis_targetvalue`.
        case distance
        /// The user's own number from `--eval-command` (direction as the user says); Icraft
        /// `metrics_targetvalue`.
        case metric
    }

    public var metric: Metric
    public var value: Double
    public var higherIsBetter: Bool

    public init(metric: Metric, value: Double, higherIsBetter: Bool? = nil) {
        self.metric = metric
        self.value = value
        self.higherIsBetter = higherIsBetter ?? (metric == .cosine || metric == .metric)
    }

    /// The target `quantize` verifies against when none is given: output cosine 0.99, worst slice.
    public static let standard = TuningTarget(metric: .cosine, value: 0.99)

    /// Parses `cosine=0.995`, `snr=0.01`, `metric>=0.75`, `metric<=3.2` (`=` means the metric's
    /// own direction: higher for cosine and metric, lower for the errors).
    public init(parsing text: String) throws {
        let ops = [">=", "<=", "="]
        guard let op = ops.first(where: { text.contains($0) }), let r = text.range(of: op) else {
            throw Self.bad(text)
        }
        let name = text[..<r.lowerBound].trimmingCharacters(in: .whitespaces).lowercased()
        let number = text[r.upperBound...].trimmingCharacters(in: .whitespaces)
        guard let metric = Metric(rawValue: name), let v = Double(number), v.isFinite else { throw Self.bad(text) }
        let own = metric == .cosine || metric == .metric
        let higher = op == ">=" ? true : op == "<=" ? false : own
        if metric != .metric && higher != own {
            throw ConfigurationError.invalidValue("--target", "'\(text)'", expected: "\(metric.rawValue) \(own ? ">=" : "<=") VALUE (\(own ? "higher" : "lower") is better for \(metric.rawValue))")
        }
        if metric == .cosine && !(v > -1 && v <= 1) {
            throw ConfigurationError.invalidValue("--target", "'\(text)'", expected: "a cosine in (-1, 1], e.g. cosine=0.99")
        }
        if metric != .cosine && metric != .metric && v < 0 {
            throw ConfigurationError.invalidValue("--target", "'\(text)'", expected: "an error of 0 or more, e.g. \(metric.rawValue)=0.01")
        }
        self.init(metric: metric, value: v, higherIsBetter: higher)
    }

    static func bad(_ text: String) -> Error {
        ConfigurationError.invalidValue("--target", "'\(text)'", expected: "METRIC=VALUE with METRIC one of \(Metric.allCases.map(\.rawValue).joined(separator: ", ")) (e.g. cosine=0.99, metric>=0.75), or none")
    }

    public func met(_ v: Double) -> Bool { v.isFinite && (higherIsBetter ? v >= value : v <= value) }

    /// True when `a` is closer to (or further past) the target than `b`.
    public func better(_ a: Double, than b: Double) -> Bool {
        guard a.isFinite else { return false }
        guard b.isFinite else { return true }
        return higherIsBetter ? a > b : a < b
    }

    /// The worst value of the metric over `report`'s outputs and their slices (`user`: the
    /// user metric of the quantized model, for `metric`).
    public func measure(_ report: AnalysisReport, user: Double? = nil) -> Double {
        if metric == .metric { return user ?? .nan }
        var worst: Double? = nil
        for o in report.outputs {
            let m = o.metrics
            var values: [Double]
            switch metric {
            case .cosine: values = [m.cosine] + (m.slices ?? []).map(\.cosine)
            case .snr: values = [m.snr] + (m.slices ?? []).map(\.snr)
            case .mse: values = [m.mse]
            case .mae: values = [m.mae]
            case .distance: values = [m.relativeEuclidean]
            case .metric: values = []
            }
            // A NaN (an output that is all zeros in float) is the worst there is.
            for v in values {
                let w = v.isNaN ? (higherIsBetter ? -Double.infinity : .infinity) : v
                if worst == nil || better(worst!, than: w) { worst = w }
            }
        }
        return worst ?? .nan
    }

    public var description: String {
        let what = metric == .metric ? "user metric" : metric.rawValue
        let scope = metric == .metric ? "" : metric == .cosine || metric == .snr ? " (every output and output slice)" : " (every output)"
        return "\(what) \(higherIsBetter ? ">=" : "<=") \(AnalysisReport.format(value))\(scope)"
    }
}

/// What the loop prefers among plans that reach the target (Icraft's `priority`).
public enum TuningPriority: String, Codable, Sendable, CaseIterable {
    /// Ops raised to int16 activations, then float; among the plans that reach the target, the best value.
    case accuracy
    /// Ops raised to int16 activations, then float; the plan with the fewest raised ops that reaches the target.
    case tradeoff
    /// Float first (in ONNX Runtime a float op costs only its own integer kernel), then int16;
    /// among the plans that reach the target the fastest (the latency command's milliseconds,
    /// else the most integer kernels in ONNX Runtime).
    case performance
}

/// How candidate ops are ranked (Icraft's `mix_precision` strategies).
public enum TuningStrategy: String, Codable, Sendable, CaseIterable {
    /// By each op's own error when it alone is quantized (layerwise noise/signal): the largest first.
    case variance
    /// By layerwise cosine similarity: the lowest first.
    case cosine
}

/// The tuning loop's settings (`quantize --target ...`, Icraft `mix_precision = "auto"` and
/// `[AutoTune]`, XQuant `precision_level` 1-2).
public struct TuningOptions: Codable, Sendable, Equatable {
    /// nil: no verification against a target and no repair (`--target none`, XQuant
    /// `precision_level` 0): the plain recipe.
    public var target: TuningTarget?
    public var priority: TuningPriority
    public var strategy: TuningStrategy
    /// Quantize-and-verify rounds after the first (the plain recipe).
    public var rounds: Int
    /// `--eval-command` (with `{model}`) and its metrics file, for the `metric` target.
    public var evalCommand: String?
    public var evalMetricsFile: String?
    /// A command printing a model's latency in milliseconds (`{model}`), e.g. scripts/ort-latency.py.
    public var latencyCommand: String?
    /// The share of the plain recipe's integer kernels (ONNX Runtime's Conv/MatMul/Gemm) a plan
    /// must keep to be chosen; nil: 0.8, or 0 with `accuracy` priority. A repair that meets the
    /// target by running the model mostly float is not what a user quantizing asked for.
    public var minIntegerShare: Double?

    /// ``minIntegerShare`` with its default.
    public var integerShare: Double { minIntegerShare ?? (priority == .accuracy ? 0 : 0.8) }

    /// The integer kernels a chosen plan must keep when the plain recipe has `plain` of them.
    public func minimumIntegerKernels(plain: Int) -> Int { Int((integerShare * Double(plain)).rounded(.up)) }

    public static let defaultRounds = 8

    public init(target: TuningTarget? = .standard, priority: TuningPriority = .tradeoff, strategy: TuningStrategy = .variance,
                rounds: Int = TuningOptions.defaultRounds, evalCommand: String? = nil, evalMetricsFile: String? = nil, latencyCommand: String? = nil,
                minIntegerShare: Double? = nil) {
        self.minIntegerShare = minIntegerShare
        self.target = target
        self.priority = priority
        self.strategy = strategy
        self.rounds = rounds
        self.evalCommand = evalCommand
        self.evalMetricsFile = evalMetricsFile
        self.latencyCommand = latencyCommand
    }

    /// Throws QK7004 for values no loop can use.
    public func validate() throws {
        if rounds < 0 { throw ConfigurationError.invalidValue("--tune-rounds", "\(rounds)", expected: "0 or more rounds") }
        if let s = minIntegerShare, !(s >= 0 && s <= 1) {
            throw ConfigurationError.invalidValue("--min-integer-share", "\(s)", expected: "a share in [0, 1], e.g. 0.8 (0: no limit)")
        }
        if let target, target.metric == .metric && evalCommand == nil {
            throw ConfigurationError.invalidValue("--target", "'\(target)'", expected: "an --eval-command that prints the metric (the metric target is the user's number)")
        }
    }
}
