import QuantCalibration

/// The grids activations, weights and biases are quantized to.
///
/// Defaults follow what ONNX Runtime's CPU provider runs fastest: activations uint8
/// asymmetric, weights int8 symmetric per output channel, bias int32 with scale
/// s_input·s_weight and zero point 0.
public struct QuantScheme: Codable, Sendable, Equatable {
    public var activation: QuantGrid
    public var weight: QuantGrid
    /// One scale per output channel of Conv/ConvTranspose/Gemm/MatMul weights.
    public var perChannelWeights: Bool
    /// How activation ranges are chosen.
    public var method: RangeMethod
    /// One weight scale per group of this many consecutive weights of each output channel's
    /// fan-in (Conv: input channel × kernel, in storage order; MatMul/Gemm: the reduction axis)
    /// instead of per channel; nil: per channel or per tensor as `perChannelWeights` says.
    public var weightGroupSize: Int?
    /// Weight grids of 4 bits or fewer stored as packed int4/uint4 (half the size; ONNX
    /// Runtime dequantizes them and runs the op float) instead of int8/uint8 (its int8 kernels).
    public var packedWeights: Bool?
    /// Non-uniform weights: each layer's integers restricted to this many values (``NonUniformLevels``).
    public var weightLevels: Int?
    /// Fixed-point scales and requantization multipliers (`--scale-format`, `--hardware-profile`).
    public var hardware: HardwareProfile?
    /// Signed accumulator bits every integer Conv/MatMul/Gemm output channel must fit (`--accumulator-bits`).
    public var accumulatorBits: Int?

    public init(activation: QuantGrid = .uint8Asymmetric, weight: QuantGrid = .int8Symmetric,
                perChannelWeights: Bool = true, method: RangeMethod = .auto) {
        self.activation = activation
        self.weight = weight
        self.perChannelWeights = perChannelWeights
        self.method = method
    }

    /// uint8 asymmetric activations, int8 symmetric per-channel weights (A8W8, the default).
    public static let u8s8 = QuantScheme()
    /// int8 symmetric activations and weights.
    public static let s8s8 = QuantScheme(activation: .int8Symmetric)
    /// 16-bit activations (uint16 asymmetric), int8 weights: A16W8.
    public static let a16w8 = QuantScheme(activation: QuantGrid(bits: 16, signed: false, symmetric: false))
}
