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
    /// SmoothQuant: per reading node (MatMul, Gemm, Conv), the factor s_j of each input channel
    /// (the input is divided by it, the weight's row multiplied). Chosen from data, so kept here.
    public var smoothing: [String: [Double]]

    public init(equalize: Bool = false, smoothing: [String: [Double]] = [:]) {
        self.equalize = equalize
        self.smoothing = smoothing
    }

    public var isEmpty: Bool { !equalize && smoothing.isEmpty }

    /// "none", "equalized", "SmoothQuant on 12 nodes", ... for messages.
    public var summary: String {
        var parts: [String] = []
        if equalize { parts.append("cross-layer equalization") }
        if !smoothing.isEmpty { parts.append("SmoothQuant on \(smoothing.count) node(s)") }
        return parts.isEmpty ? "none" : parts.joined(separator: " + ")
    }

    enum CodingKeys: String, CodingKey { case equalize, smoothing }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        equalize = try c.decodeIfPresent(Bool.self, forKey: .equalize) ?? false
        smoothing = try c.decodeIfPresent([String: [Double]].self, forKey: .smoothing) ?? [:]
    }
}
