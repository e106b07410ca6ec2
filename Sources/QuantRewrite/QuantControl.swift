import QuantCalibration

/// Which parts of the graph are quantized, and how, beyond the scheme.
public struct QuantControl: Codable, Sendable, Equatable {
    /// Nodes kept float, by name.
    public var excludeNodes: [String]
    /// Op types kept float.
    public var excludeOpTypes: [String]
    /// Tensors after which everything downstream stays float (`truncate_var_names`).
    public var truncateAfter: [String]
    /// Settings for the part of the graph between some tensors (`custom_setting`).
    public var subgraphSettings: [SubgraphSetting]
    /// A Concat whose inputs' ranges differ by more than this factor gives each input its own
    /// scale instead of one shared scale (nil: `defaultConcatSplitRatio`; 0: always share, for
    /// hardware whose concatenation cannot requantize).
    public var concatSplitRatio: Double?
    /// Per op precision, weight granularity and range method (`--plan`), over the scheme and
    /// the other settings here; ops it does not list follow them.
    public var plan: PrecisionPlan?
    /// The whole model in one float format (`--precision fp16|bf16`, XQuant precision_level 4):
    /// every op runs float on values rounded to it, weights stored in it; nothing is quantized.
    public var wholeModel: PrecisionPlan.Precision?

    public static let defaultConcatSplitRatio = 16.0

    public init(excludeNodes: [String] = [], excludeOpTypes: [String] = [], truncateAfter: [String] = [], subgraphSettings: [SubgraphSetting] = [],
                concatSplitRatio: Double? = nil, plan: PrecisionPlan? = nil) {
        self.plan = plan
        self.excludeNodes = excludeNodes
        self.excludeOpTypes = excludeOpTypes
        self.truncateAfter = truncateAfter
        self.subgraphSettings = subgraphSettings
        self.concatSplitRatio = concatSplitRatio
    }
}

/// A setting for the nodes on paths from `inputNames` to `outputNames` (both tensor names).
public struct SubgraphSetting: Codable, Sendable, Equatable {
    public var inputNames: [String]
    public var outputNames: [String]
    public var keepFloat: Bool
    /// Activation bits for tensors produced inside (8 or 16).
    public var bits: Int?
    public var method: RangeMethod?

    public init(inputNames: [String], outputNames: [String], keepFloat: Bool = false, bits: Int? = nil, method: RangeMethod? = nil) {
        self.inputNames = inputNames
        self.outputNames = outputNames
        self.keepFloat = keepFloat
        self.bits = bits
        self.method = method
    }
}
