/// How a tensor's clipping range is chosen from its statistics.
public enum RangeMethod: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Observed min and max, no saturation (Icraft `null`, Knight `min_max`).
    case minMax
    /// Mean over batches of each batch's min and max ("avg").
    case average
    /// mean ± n·std, clamped to the observed range ("n_std").
    case standardDeviations(Double)
    /// The `fraction` quantile (e.g. 0.9999) of |x| (symmetric) or of x on both tails.
    case percentile(Double)
    /// KL-divergence (entropy) threshold search, Migacz 2017: candidates every `stride` bins.
    case kl(stride: Int)
    /// Finer KL: every bin a candidate, empty bins smoothed, asymmetric search per side.
    case klV2
    /// Clip minimizing expected clipping + rounding squared error over the histogram (`ems`).
    case mse
    /// QuantKit's recommendation: per tensor, the candidate among minmax, percentile 0.9999
    /// and mse whose quantize-dequantize error on the tensor's histogram is lowest.
    case auto

    /// The method names accepted in configs and on the command line.
    public static let names = ["default", "minmax", "null", "min_max", "avg", "n_std", "percentile", "kl", "kld", "entropy", "kl_v2", "mse", "ems"]

    /// Parses a method name; `percentile` takes `fraction`, `n_std` takes `n`.
    public init?(name: String, percentile fraction: Double = 0.9999, n: Double = 3) {
        switch name.lowercased() {
        case "default", "auto": self = .auto
        case "minmax", "min_max", "null": self = .minMax
        case "avg", "average": self = .average
        case "n_std", "nstd": self = .standardDeviations(n)
        case "percentile": self = .percentile(fraction)
        case "kl", "entropy": self = .kl(stride: 1)
        case "kld": self = .kl(stride: 128)
        case "kl_v2", "klv2": self = .klV2
        case "mse", "ems": self = .mse
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .minMax: "minmax"
        case .average: "avg"
        case .standardDeviations(let n): "n_std(\(n))"
        case .percentile(let p): "percentile(\(p))"
        case .kl(let s): s == 1 ? "kl" : "kl(stride \(s))"
        case .klV2: "kl_v2"
        case .mse: "mse"
        case .auto: "default"
        }
    }

    /// True when the method needs histograms.
    public var needsHistogram: Bool {
        switch self {
        case .minMax, .average, .standardDeviations: false
        default: true
        }
    }
}
