import QuantAlgorithms
import QuantCalibration
import QuantIR

/// What the rewrite decided for one graph (``QDQRewriter/plan(_:main:settings:result:)``), before
/// it inserts anything: the value ``QDQRewriter/apply(_:to:main:names:result:)`` carries out.
struct GraphQuantPlan {
    /// One quantized tensor (an activation, or a constant read as one): its grid and parameters.
    struct Tensor: Equatable {
        var grid: QuantGrid
        var scale: Double
        var zeroPoint: Int
        /// The clipping range the scale and zero point come from (the group's union).
        var range: ClipRange
        /// How the range was chosen (`mse`, `constant`, `minmax+percentile(0.9999)`, ...).
        var method: String
        /// The sharing group (its root tensor): members have one scale and zero point.
        var group: String
    }

    /// Quantized tensors by name.
    var tensors: [String: Tensor]
    /// The nodes that run on quantized inputs, in graph order, with their rules.
    var rules: [(Node, OpRule)]
    /// Nodes that run float.
    var floatRun: Set<ObjectIdentifier>
    /// Outputs of float nodes.
    var floatProduced: Set<String>
    /// Nodes the user's settings keep float (excluded, truncated, a float region, the plan).
    var keptFloat: Set<ObjectIdentifier>
    /// Float nodes that run on fp16/bf16-rounded values.
    var rounded: [(Node, PrecisionPlan.Precision)]
    /// Per node: its weight scales per tensor, channel or group, where the plan says.
    var weightGranularity: [ObjectIdentifier: PrecisionPlan.Granularity]
    /// Per node: weight bits below the scheme's (an op's reduced value range).
    var weightBits: [ObjectIdentifier: Int]
}
