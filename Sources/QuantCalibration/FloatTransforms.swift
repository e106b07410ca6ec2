import Foundation

/// The float-equivalent rewrites applied to the prepared model before it is calibrated and
/// quantized: its outputs stay the same, but tensors inside change (a channel divided by a
/// factor), so calibration, the rewrite and the analysis's float reference must all run the
/// same transformed model. A statistics file records the transforms its tensors were observed
/// under, and a parameter record the transforms of its model.
public struct FloatTransforms: Codable, Sendable, Equatable {
    /// Cross-layer equalization of Conv chains (``CrossLayerEqualization``; data-free, so the
    /// setting alone reproduces it).
    public var equalize: Bool
    /// SmoothQuant: per smoothed tensor (the input of MatMul, Gemm or Conv readers), the factor
    /// s_j of each channel (the tensor is divided by it, the readers' weight rows multiplied).
    /// Chosen from data, so kept here.
    public var smoothing: [String: [Double]]

    public init(equalize: Bool = false, smoothing: [String: [Double]] = [:]) {
        self.equalize = equalize
        self.smoothing = smoothing
    }

    public var isEmpty: Bool { !equalize && smoothing.isEmpty }

    /// "none", "equalized", "SmoothQuant on 12 nodes", ... for messages.
    public var summary: String { FloatTransforms.describe(equalize: equalize, smoothed: smoothing.count) }

    /// The summary of transforms with equalization as given and SmoothQuant on `smoothed`
    /// inputs (nil: SmoothQuant, count not known yet; 0: none).
    public static func describe(equalize: Bool, smoothed: Int?) -> String {
        var parts: [String] = []
        if equalize { parts.append("cross-layer equalization") }
        switch smoothed {
        case nil: parts.append("SmoothQuant")
        case let n? where n > 0: parts.append("SmoothQuant on \(n) input(s)")
        default: break
        }
        return parts.isEmpty ? "none" : parts.joined(separator: " + ")
    }

    enum CodingKeys: String, CodingKey { case equalize, smoothing }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        equalize = try c.decodeIfPresent(Bool.self, forKey: .equalize) ?? false
        smoothing = try c.decodeIfPresent([String: [Double]].self, forKey: .smoothing) ?? [:]
    }
}
