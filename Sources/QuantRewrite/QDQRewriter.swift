import Foundation
import QuantAlgorithms
import QuantCalibration
import QuantCore
import QuantExecutor
import QuantIR

/// Rewrites a float graph into QDQ form that ONNX Runtime fuses into integer kernels.
///
/// Mark first, insert once: per-op rules (`OpRules`) mark which tensors are quantized and
/// which share parameters (union-find groups: data-movement ops with their input, Concat
/// inputs with its output); then one pass inserts, per quantized activation tensor T,
/// `T -> QuantizeLinear -> DequantizeLinear -> readers`, quantizes weights to int8 initializers
/// behind a DequantizeLinear (per output channel), and biases to int32 with scale
/// s_input·s_weight. Graph outputs keep their names and stay float (the DequantizeLinear
/// produces them). Relu, and Clip(0, max), after an op whose output is quantized on an
/// asymmetric grid are absorbed: the quantized range [0, max] clamps exactly as they do.
public struct QDQRewriter {
    public struct Options {
        public var scheme: QuantScheme
        public var control: QuantControl
        /// The clipping range of an activation tensor for a grid and method, or nil when the
        /// tensor was not observed (integer tensors, unreached branches).
        public var range: (String, QuantGrid, RangeMethod) -> (ClipRange, String)?
        /// Per node name: the input Hessian its weight is rounded with (error-compensated
        /// rounding); nodes without one round to nearest.
        public var weightHessians: [String: WeightHessian] = [:]
        /// With Hessians: round adaptively (``AdaRound``) instead of GPTQ's error compensation.
        public var adaRound: AdaRound.Options? = nil
        /// Earlier outcomes to reuse (tuning rounds).
        public var adaRoundCache: AdaRound.Cache? = nil
        /// Called after each weight AdaRound rounded (progress of the longest part of the rewrite).
        public var onRounded: (() -> Void)? = nil
        /// Per node name (Conv, Gemm): E[x] of the inputs its weights multiply, per group (see
        /// ``WeightHessianCollector/inputMeans``); the bias then absorbs the output shift weight
        /// rounding causes (``BiasCorrection``).
        public var inputMeans: [String: [[Double]]] = [:]
        /// The squared quantization error of an activation tensor's calibration values with a
        /// given grid, scale and zero point (histogram), nil when not observed: chooses among
        /// fixed-point scales (`QuantScheme.hardware`).
        public var activationError: ((String, QuantGrid, Double, Int) -> Double?)? = nil
        /// Tensors whose range is set from outside (ONNX Runtime's TensorQuantOverrides): a
        /// group sharing one scale takes its range from these members alone.
        public var fixedRange: (String) -> Bool = { _ in false }

        public init(scheme: QuantScheme, control: QuantControl, range: @escaping (String, QuantGrid, RangeMethod) -> (ClipRange, String)?) {
            self.scheme = scheme
            self.control = control
            self.range = range
        }
    }

    public struct Result {
        public var parameters: [String: TensorQuantParameters] = [:]
        public var quantizedNodes: [String] = []
        public var floatNodes: [String] = []
        public var absorbedActivations = 0
        public var warnings: [String] = []
        /// Per node: channels whose weight scale was widened to keep a large bias exact while
        /// their weights are negligible (summarised in one warning).
        var negligibleChannels: [(node: String, count: Int)] = []
        /// Nodes whose weight scales were widened to fit the accumulator (one warning).
        var accumulatorFits: [String] = []
        /// Scales the hardware profile's bounds clamped (summarised in one warning).
        var clampedScales: [String] = []
        /// The plan this run used: per op of the prepared model (main graph, then bodies depth
        /// first) its precision, weight granularity and range method, and why float ops are float.
        public var plan = PrecisionPlan()
        /// Per DequantizeLinear output inserted for an activation or constant: the tensor it
        /// stands for (a fresh name may differ from `T_DequantizeLinear_Output` when that is taken).
        var dequantized: [String: String] = [:]
        /// Position of every node of the prepared model (the plan's op_id).
        var opIds: [ObjectIdentifier: Int] = [:]
        /// Per node: the precision, method and float reason it got.
        var applied: [ObjectIdentifier: (PrecisionPlan.Precision, RangeMethod?, String?)] = [:]
        /// Per op: its activation bits where they are not the precision's 8 or 16 (a reduced value range).
        var valueRanges: [ObjectIdentifier: Int] = [:]
        var granularity: [ObjectIdentifier: PrecisionPlan.Granularity] = [:]
        /// Per node whose weight AdaRound rounded: weights flipped from nearest, output error before and after.
        public var rounding: [String: WeightRoundingRecord] = [:]
    }

    let model: Model
    let options: Options

    public init(model: Model, options: Options) {
        self.model = model
        self.options = options
    }

    /// Element-wise and data-movement ops are worth quantizing only next to quantized readers: an
    /// op whose every reader stays float would be quantized just to be dequantized again, and
    /// its output range may be unfit for a grid (the attention-mask Add before a float Softmax:
    /// -10000 entries would swamp the scores). Decided from the graph's end backwards, so chains
    /// of such ops stay float together. Conv/ConvTranspose/Gemm/MatMul (integer kernels with float
    /// output exist) and Relu/Clip (absorbed) keep their rules; graph outputs are unaffected.
    ///
    /// In an If/Loop/Scan body (`main` false) the body's outputs count as float readers (the
    /// enclosing node runs float), and Concat follows the rule too: a recurrent model's state
    /// concatenated from float LSTM outputs into a body output would otherwise go on 256 steps.
    func keepFloatBeforeFloatReaders(_ g: Graph, main: Bool = true, floatNodes: inout Set<ObjectIdentifier>) {
        let index = GraphIndex(g)
        let outputs = Set(g.outputs.map(\.name))
        for n in g.nodes.reversed() where !floatNodes.contains(ObjectIdentifier(n)) {
            guard let rule = OpRules.rule(for: n, isConstant: g.isInitializer, constant: g.initializer) else {
                floatNodes.insert(ObjectIdentifier(n))
                continue
            }
            guard main ? rule.kind != .concat : true, !OpRules.traits(of: n).quantizedBeforeFloatReaders else { continue }
            let outs = n.outputs.filter { !$0.isEmpty }
            let feedsOutput = outs.contains(where: outputs.contains)
            guard !outs.isEmpty, !(main && feedsOutput) else { continue }
            let readers = outs.flatMap { index.consumers(of: $0) }
            if (!readers.isEmpty || feedsOutput) && readers.allSatisfy({ floatNodes.contains(ObjectIdentifier($0)) }) {
                floatNodes.insert(ObjectIdentifier(n))
            }
        }
    }

    /// True when every reader of `t` runs float (and there is at least one, or `t` is a graph output).
    func readsFloatOnly(_ t: String, _ g: Graph, _ index: GraphIndex, _ floatNodes: Set<ObjectIdentifier>) -> Bool {
        let readers = index.consumers(of: t)
        guard !readers.isEmpty || g.outputs.contains(where: { $0.name == t }) else { return false }
        return readers.allSatisfy { floatNodes.contains(ObjectIdentifier($0)) }
    }

    public func run() throws -> Result {
        let g = model.graph
        var result = Result()
        try Regions.checkCut(options.control.truncateAfter, in: g, what: "truncate")
        try Regions.checkSeparates(options.control.truncateAfter, in: g)
        var names = NameAllocator(g)
        let planned = g.allNodes
        for (k, n) in planned.enumerated() { result.opIds[ObjectIdentifier(n)] = k }
        if let plan = options.control.plan { try Self.check(plan, against: planned) }
        // Collected before the main graph changes: rewriting a graph never adds or removes the
        // nodes that own bodies, and a body's nested bodies are listed after it.
        let bodies = Self.bodies(of: g)
        // Each custom_setting applies in the graph its tensors are in (the main graph or a body).
        var settings: [ObjectIdentifier: [SubgraphSetting]] = [:]
        for s in options.control.subgraphSettings {
            let home = Regions.home(of: s.inputNames + s.outputNames, in: [g] + bodies.map(\.graph)) ?? g
            try Regions.checkCut(s.inputNames + s.outputNames, in: home, what: "custom_setting")
            settings[ObjectIdentifier(home), default: []].append(s)
        }
        var (usesMicrosoftDomain, keptFloat) = try rewrite(g, main: true, settings: settings[ObjectIdentifier(g)] ?? [], names: &names, result: &result)
        // If/Loop/Scan bodies get the same rules, one graph at a time: values they read from an
        // enclosing graph count as float inputs, Q/DQ parameters become the body's own
        // initializers. A body calibration never ran (the other branch of an If whose condition
        // was the same for every item) stays float: it has no ranges. The bodies of a node kept
        // float by the user (excluded, after a truncation cut, in a keep-float region) stay
        // float with it, nested bodies included.
        var unreached: [(String, Int)] = []
        var floatGraphs = Set<ObjectIdentifier>()
        for (label, body, enclosing, owner) in bodies {
            if keptFloat.contains(ObjectIdentifier(owner)) || enclosing.contains(where: { floatGraphs.contains(ObjectIdentifier($0)) }) {
                floatGraphs.insert(ObjectIdentifier(body))
                for n in body.nodes { result.applied[ObjectIdentifier(n)] = (.fp32, nil, "in the body of a node kept float") }
                continue
            }
            let own = body.nodes.filter { $0.opType != "Constant" }
            let reached = own.contains { n in
                n.outputs.contains { !$0.isEmpty && options.range($0, options.scheme.activation, .minMax) != nil }
            }
            guard reached else {
                unreached.append((label, own.count))
                for n in body.nodes { result.applied[ObjectIdentifier(n)] = (.fp32, nil, "in a body calibration never ran") }
                continue
            }
            Self.localizeOuterConstants(body, enclosing: enclosing, names: &names)
            let (microsoft, kept) = try rewrite(body, main: false, settings: settings[ObjectIdentifier(body)] ?? [], names: &names, result: &result)
            usesMicrosoftDomain = usesMicrosoftDomain || microsoft
            keptFloat.formUnion(kept)
        }
        // Enclosing constants the bodies now hold copies of: innermost graphs first.
        if !bodies.isEmpty {
            for (_, body, _, _) in bodies.reversed() { Preparation.removeUnusedInitializers(body) }
            Preparation.removeUnusedInitializers(g)
        }
        if !unreached.isEmpty {
            let total = unreached.reduce(0) { $0 + $1.1 }
            let examples = unreached.prefix(3).map { "'\($0.0)'" }.joined(separator: ", ")
            result.warnings.append("\(unreached.count) If/Loop/Scan bod\(unreached.count == 1 ? "y" : "ies") (\(total) nodes; e.g. \(examples)) never ran "
                                   + "during calibration and stay float: calibrate with inputs that take those branches to quantize them")
        }
        if usesMicrosoftDomain { model.declareDomain("com.microsoft") }
        // Exclusions that match nothing: misspelt, or a node preparation folded into a neighbour
        // (a BatchNorm, a constant Mul/Add, a hard-swish chain, a Pad, an Identity).
        let present = Set(g.allNodes.map(\.name)), types = Set(g.allNodes.map(\.opType))
        let strayNodes = options.control.excludeNodes.filter { !present.contains($0) }
        let strayTypes = options.control.excludeOpTypes.filter { !types.contains($0) }
        if !strayNodes.isEmpty {
            result.warnings.append("exclude_nodes: \(strayNodes.prefix(5).map { "'\($0)'" }.joined(separator: ", "))\(strayNodes.count > 5 ? " and \(strayNodes.count - 5) more" : "") "
                                   + "match no node of the prepared model (misspelt, or folded into a neighbouring Conv or op by preparation): "
                                   + "use the node names of the analysis report (NAME.report.md), which are the prepared model's")
        }
        if !strayTypes.isEmpty {
            result.warnings.append("exclude_op_types: \(strayTypes.map { "'\($0)'" }.joined(separator: ", ")) match no node of the prepared model")
        }
        result.plan = PrecisionPlan(ops: planned.enumerated().map { k, n in
            let (dtype, method, reason) = result.applied[ObjectIdentifier(n)] ?? (.fp32, nil, Self.noQuantizedForm)
            return PrecisionPlan.Op(opId: k, node: n.name, type: n.opType, dtype: dtype, per: result.granularity[ObjectIdentifier(n)], saturation: method,
                                    valueRangeInBits: dtype.isFloat ? nil : result.valueRanges[ObjectIdentifier(n)], reason: reason)
        })
        if let plan = options.control.plan {
            let asked = Set(plan.ops.filter { !$0.dtype.isFloat }.map(\.node))
            let stayed = result.plan.ops.filter { $0.dtype.isFloat && asked.contains($0.node) }
            if !stayed.isEmpty {
                result.warnings.append("plan: \(stayed.count) op(s) asked to be quantized stay float (e.g. \(stayed.prefix(3).map { "'\($0.node)' (\($0.reason ?? "float"))" }.joined(separator: ", "))); "
                                       + "the written plan says why for each")
            }
        }
        if !result.accumulatorFits.isEmpty, let bits = options.scheme.accumulatorBits {
            result.warnings.append("\(result.accumulatorFits.count) node(s) could overflow a \(bits)-bit accumulator; their weight scales were widened until the worst case fits, "
                                   + "which coarsens those weights (\(result.accumulatorFits.prefix(4).joined(separator: "; "))\(result.accumulatorFits.count > 4 ? "; ..." : ""))")
        }
        if !result.clampedScales.isEmpty, let f = options.scheme.hardware?.scale {
            let (lo, hi) = f.bounds
            result.warnings.append("\(result.clampedScales.count) scale(s) outside the hardware profile's \(f.describe(lo)) to \(f.describe(hi)) were clamped to the bound, "
                                   + "which loses precision (e.g. \(result.clampedScales.prefix(3).joined(separator: "; ")))")
        }
        if !result.negligibleChannels.isEmpty {
            let total = result.negligibleChannels.reduce(0) { $0 + $1.count }
            let examples = result.negligibleChannels.prefix(3).map { "'\($0.node)' \($0.count)" }.joined(separator: ", ")
            result.warnings.append("\(total) channel(s) in \(result.negligibleChannels.count) node(s) have negligible weights and a large bias "
                                   + "(typically channels BatchNorm folding switched off; e.g. \(examples)): their weight scale was widened so "
                                   + "the int32 bias stays exact, and their outputs lose nothing that matters")
        }
        return result
    }

    /// The plan's reason for an op without a quantized form (no rule).
    static let noQuantizedForm = "no quantized form"

    /// Refuses a plan naming ops the prepared model does not have (QK5006): a plan written for
    /// another model, or a name from the model before preparation folded the node away.
    static func check(_ plan: PrecisionPlan, against nodes: [Node]) throws {
        let present = Set(nodes.map(\.name))
        let missing = plan.ops.filter { $0.node.isEmpty ? $0.opId >= nodes.count : !present.contains($0.node) }
        guard let first = missing.first else { return }
        let what = first.node.isEmpty ? "op_id \(first.opId) (the model has \(nodes.count) ops)" : "node '\(first.node)'"
        throw QuantKitError("QK5006", "the precision plan names \(what)\(missing.count > 1 ? " and \(missing.count - 1) more op(s)" : "") not in the prepared model",
                            fix: "write the plan from this model (every quantize writes NAME.plan.csv beside its output) and edit that; "
                                + "node names are the prepared model's, as in the analysis report")
    }

    /// Every subgraph below `g` with a label (`node.attribute`, nested labels joined by '/'), its
    /// enclosing graphs (outermost first) and the node owning it, each graph before the bodies
    /// nested in it.
    static func bodies(of g: Graph, prefix: String = "", enclosing: [Graph] = []) -> [(label: String, graph: Graph, enclosing: [Graph], owner: Node)] {
        var out: [(label: String, graph: Graph, enclosing: [Graph], owner: Node)] = []
        for n in g.nodes {
            for a in n.attributes {
                let graphs = a.subgraphs
                for (k, sg) in graphs.enumerated() {
                    let label = prefix + (n.name.isEmpty ? n.opType : n.name) + "." + a.name + (graphs.count > 1 ? "[\(k)]" : "")
                    out.append((label, sg, enclosing + [g], n))
                    out += bodies(of: sg, prefix: label + "/", enclosing: enclosing + [g])
                }
            }
        }
        return out
    }

    /// Float initializers of enclosing graphs that `body`'s Conv/ConvTranspose/Gemm/MatMul
    /// nodes read as weight or bias (a branch's Conv weight kept in the main graph) get a copy in
    /// the body under a fresh name, so they are quantized like the body's own constants; the
    /// enclosing copy goes once nothing reads it. Other constants stay where they are (a copy
    /// would only grow the file).
    static func localizeOuterConstants(_ body: Graph, enclosing: [Graph], names: inout NameAllocator) {
        let own = Set(body.initializers.map(\.name)).union(body.inputs.map(\.name))
        var local: [String: String] = [:]
        for n in body.nodes where OpRules.traits(of: n).hasWeight {
            for (k, t) in n.inputs.enumerated() where k >= 1 && !t.isEmpty && !own.contains(t) {
                if let l = local[t] {
                    n.inputs[k] = l
                    continue
                }
                guard let c = enclosing.reversed().lazy.compactMap({ $0.initializer(t) }).first, c.dtype == .float else { continue }
                let l = names.fresh(t + "_local")
                body.setInitializer(l, c)
                n.inputs[k] = l
                local[t] = l
            }
        }
    }

    /// Marks and inserts Q/DQ in one graph (`main`: the model's graph, where truncation
    /// applies; else an If/Loop/Scan body), with the custom_settings whose tensors are in it.
    /// Outputs of HardSigmoid nodes whose only reader is a Mul of the HardSigmoid's own input by
    /// it: the gate of a hard-swish.
    static func hardSwishGates(_ g: Graph, _ index: GraphIndex) -> Set<String> {
        var gates = Set<String>()
        for h in g.nodes where h.isStandard && h.opType == "HardSigmoid" {
            guard let x = h.inputs.first, let s = h.outputs.first, !s.isEmpty,
                  !g.outputs.contains(where: { $0.name == s }) else { continue }
            let readers = index.consumers(of: s)
            if readers.count == 1, readers[0].isStandard, readers[0].opType == "Mul", Set(readers[0].inputs) == [x, s] { gates.insert(s) }
        }
        return gates
    }

    /// Plans and applies one graph. Returns whether a com.microsoft Q/DQ was written, and the
    /// nodes the user's settings keep float (their bodies stay float too).
    func rewrite(_ g: Graph, main: Bool, settings: [SubgraphSetting], names: inout NameAllocator,
                 result: inout Result) throws -> (Bool, Set<ObjectIdentifier>) {
        let decided = try plan(g, main: main, settings: settings, result: &result)
        let microsoft = try apply(decided, to: g, main: main, names: &names, result: &result)
        try checkMultipliers(g, result: &result)
        return (microsoft, decided.keptFloat)
    }

    /// Decides everything for one graph (`main`: the model's graph, where truncation applies;
    /// else an If/Loop/Scan body, with the custom_settings whose tensors are in it): which nodes
    /// run float and why, which tensors are quantized, their grid, range, scale and zero point
    /// (one set per sharing group), each quantized node's rule. The graph changes only where a
    /// Relu/Clip is absorbed into the quantized output before it (a float-equivalent rewrite).
    func plan(_ g: Graph, main: Bool, settings: [SubgraphSetting], result: inout Result) throws -> GraphQuantPlan {
        // Per-node settings: float, or activation grid/method overrides.
        var floatNodes = main ? Regions.downstream(of: options.control.truncateAfter, in: g) : []
        // Why a node runs float, for the plan written (the other reasons are found below).
        var why: [ObjectIdentifier: String] = [:]
        for id in floatNodes { why[id] = "after a truncate tensor" }
        var overrides: [ObjectIdentifier: SubgraphSetting] = [:]
        for s in settings {
            for id in Regions.between(s.inputNames, s.outputNames, in: g) {
                if s.keepFloat {
                    floatNodes.insert(id)
                    why[id] = why[id] ?? "custom_setting float"
                } else {
                    overrides[id] = s
                }
            }
        }
        for n in g.nodes where options.control.excludeNodes.contains(n.name) || options.control.excludeOpTypes.contains(n.opType) {
            floatNodes.insert(ObjectIdentifier(n))
            why[ObjectIdentifier(n)] = why[ObjectIdentifier(n)] ?? "excluded"
        }
        // The plan's ops: float ones join the float nodes (a node owning bodies keeps them float
        // too, as an exclusion does), integer ones whose bits or method differ from the scheme's
        // override them as a custom_setting does; fp16/bf16 ones get their rounding below.
        var rounded: [(Node, PrecisionPlan.Precision)] = []
        var planFloat: [ObjectIdentifier: String] = [:]
        var weightGranularity: [ObjectIdentifier: PrecisionPlan.Granularity] = [:]
        var weightBits: [ObjectIdentifier: Int] = [:]
        if let whole = options.control.wholeModel {
            for n in g.nodes {
                planFloat[ObjectIdentifier(n)] = "precision \(whole.rawValue)"
                if whole != .fp32 { rounded.append((n, whole)) }
            }
        } else if let plan = options.control.plan {
            for n in g.nodes {
                let id = ObjectIdentifier(n)
                guard let k = result.opIds[id], let op = plan.op(node: n.name, opId: k) else { continue }
                if let per = op.per { weightGranularity[id] = per }
                if op.dtype.isFloat {
                    // A row's reason is kept, so that a written plan read back is written the same.
                    if !floatNodes.contains(id) { planFloat[id] = op.reason ?? "plan" }
                    if op.dtype != .fp32 { rounded.append((n, op.dtype)) }
                } else if floatNodes.contains(id) {
                    continue
                } else {
                    let bits = op.valueRangeInBits ?? op.dtype.bits!
                    let current = overrides[id]
                    let currentBits = current?.bits ?? options.scheme.activation.bits
                    let method = op.saturation ?? current?.method ?? options.scheme.method
                    if bits != currentBits || method != (current?.method ?? options.scheme.method) {
                        overrides[id] = SubgraphSetting(inputNames: [], outputNames: [], bits: bits, method: method)
                    }
                }
            }
        }
        var keptFloat = floatNodes
        let roundedTo = Dictionary(rounded.map { (ObjectIdentifier($0.0), $0.1) }, uniquingKeysWith: { a, _ in a })
        for n in g.nodes {
            guard let reason = planFloat[ObjectIdentifier(n)] else { continue }
            floatNodes.insert(ObjectIdentifier(n))
            why[ObjectIdentifier(n)] = reason
            // A node owning bodies that the plan keeps float keeps them float, unless the row
            // only records that the node itself has no quantized form (an If or Loop).
            if !n.subgraphs.isEmpty && reason != Self.noQuantizedForm { keptFloat.insert(ObjectIdentifier(n)) }
        }
        // Concats joining inputs of far different ranges keep each input's scale; one whose
        // output is a graph output runs float (its readers are the user's post-processing).
        var disparate: [ObjectIdentifier: Double] = [:]
        let graphOutputs = Set(g.outputs.map(\.name))
        for n in g.nodes where n.isStandard && n.opType == "Concat" && !floatNodes.contains(ObjectIdentifier(n)) {
            guard let ratio = concatRangeRatio(n, g) else { continue }
            disparate[ObjectIdentifier(n)] = ratio
            let toOutput = main && n.outputs.contains(where: graphOutputs.contains)
            if toOutput {
                floatNodes.insert(ObjectIdentifier(n))
                why[ObjectIdentifier(n)] = "graph-output Concat of inputs with far-apart ranges"
            }
            result.warnings.append("\(n.label) joins inputs whose ranges differ \(String(format: "%.0f", ratio))x: each input keeps its own scale"
                                   + (toOutput ? " and the Concat runs float (its output is a graph output)" : " and the Concat requantizes them")
                                   + " (--concat-split-ratio 0: one shared scale, for hardware that cannot requantize)")
        }
        keepFloatBeforeFloatReaders(g, main: main, floatNodes: &floatNodes)
        var absorbed: [(Node, Node)] = []
        if !options.scheme.activation.symmetric {
            absorbed = absorbActivations(g, floatNodes: floatNodes)
            result.absorbedActivations += absorbed.count
        }

        // Mark.
        var groups = UnionFind()
        var wanted = Set<String>()
        var rules: [(Node, OpRule)] = []
        var gridOf: [String: (QuantGrid, RangeMethod)] = [:]
        // Tensors a custom_setting names (inputs and outputs of the nodes in its region): their
        // grid and method win over the first-come setting of `gridOf`, for their whole group.
        var overrideOf: [String: (QuantGrid, RangeMethod)] = [:]
        let index = GraphIndex(g)
        var floatProduced = Set<String>()
        var floatRun = Set<ObjectIdentifier>()
        for n in g.nodes {
            guard !floatNodes.contains(ObjectIdentifier(n)), let rule = OpRules.rule(for: n, isConstant: g.isInitializer, constant: g.initializer) else {
                let reason = why[ObjectIdentifier(n)]
                    ?? (OpRules.rule(for: n, isConstant: g.isInitializer, constant: g.initializer) == nil ? Self.noQuantizedForm : "its readers run float")
                result.applied[ObjectIdentifier(n)] = (roundedTo[ObjectIdentifier(n)] ?? .fp32, nil, reason)
                result.floatNodes.append(n.name)
                floatProduced.formUnion(n.outputs)
                floatRun.insert(ObjectIdentifier(n))
                continue
            }
            // Relu/Clip right after a float node stay float too: quantizing their input would
            // put the wide pre-activation range on a grid only to clip it again.
            if OpRules.traits(of: n).absorbable, let x = n.inputs.first, floatProduced.contains(x) {
                result.applied[ObjectIdentifier(n)] = (.fp32, nil, "reads a float op's output")
                result.floatNodes.append(n.name)
                floatProduced.formUnion(n.outputs)
                floatRun.insert(ObjectIdentifier(n))
                continue
            }
            rules.append((n, rule))
            var grid = options.scheme.activation, method = options.scheme.method
            let ins = rule.activationInputs.filter { $0 < n.inputs.count && !n.inputs[$0].isEmpty }.map { n.inputs[$0] }
            if let o = overrides[ObjectIdentifier(n)] {
                if let b = o.bits { grid = QuantGrid(bits: b, signed: grid.signed, symmetric: grid.symmetric) }
                if let m = o.method { method = m }
                for t in ins + n.outputs where !t.isEmpty && overrideOf[t] == nil { overrideOf[t] = (grid, method) }
            }
            result.applied[ObjectIdentifier(n)] = (grid.bits > 8 ? .int16 : .int8, method, nil)
            if grid.bits != 8 && grid.bits != 16 {
                result.valueRanges[ObjectIdentifier(n)] = grid.bits
                // An op's own reduced range (a plan row, not `--value-range W;A`, whose W is the
                // scheme's): its weights on no more bits than its activations.
                if grid.bits != options.scheme.activation.bits && grid.bits < options.scheme.weight.bits { weightBits[ObjectIdentifier(n)] = grid.bits }
            }
            for t in ins + n.outputs where !t.isEmpty && gridOf[t] == nil { gridOf[t] = (grid, method) }
            switch rule.kind {
            case .compute:
                wanted.formUnion(ins)
                // A MatMul or Gemm whose readers all run float (or that produces a graph output)
                // keeps a float output: ONNX Runtime runs `DQ -> MatMul` without a Q as
                // MatMulIntegerToFloat and `DQ -> Gemm` as QGemm with a float output, so a Q/DQ
                // there would only add rounding and clipping error (a transformer's FFN
                // down-projection before its float bias Add, residual Add and LayerNormalization;
                // a classifier's logits, whose top-2 margin 256 steps would blur).
                if let o = n.outputs.first, !(OpRules.traits(of: n).floatOutputFuses && readsFloatOnly(o, g, index, floatNodes)) { wanted.insert(o) }
            case .shareInput:
                // Sharing saves a requantization only when the input is quantized anyway; after
                // a node kept float (e.g. an excluded Conv before its Relu6) the input would be
                // quantized just for this op, on the wider pre-activation range: the output gets
                // its own parameters instead and the op runs float.
                guard let first = ins.first, !floatProduced.contains(first) else { break }
                for o in n.outputs where !o.isEmpty { groups.union(first, o) }
            case .concat:
                if disparate[ObjectIdentifier(n)] != nil {
                    wanted.formUnion(ins)
                } else {
                    for t in ins { groups.union(t, n.outputs[0]) }
                }
                wanted.insert(n.outputs[0])
            }
        }
        for (a, p) in absorbed { result.applied[ObjectIdentifier(a)] = result.applied[ObjectIdentifier(p)] ?? (options.scheme.activation.bits > 8 ? .int16 : .int8, options.scheme.method, nil) }
        // x·HardSigmoid(x) is hard-swish (torch exports nn.Hardswish so below opset 14, and
        // preparation writes the chain x·Clip(x+3, 0, 6)/6 so): its gate stays float, as ONNX
        // Runtime runs a HardSwish op between the DequantizeLinear of x and the QuantizeLinear of
        // the product; rounding the gate would only add error (no integer kernel uses it).
        wanted.subtract(Self.hardSwishGates(g, index))
        // A group is quantized when any member is wanted; members without a range drop out.
        let wantedRoots = Set(wanted.map { groups.find($0) })
        var members: [String: [String]] = [:]
        for t in Set(gridOf.keys).union(wanted) where wantedRoots.contains(groups.find(t)) { members[groups.find(t), default: []].append(t) }
        /// A group's grid and method: a custom_setting's when one of its tensors is in a region
        /// (tensors sharing parameters with the region follow it, and a warning names them).
        func setting(of ts: [String]) -> (QuantGrid, RangeMethod) {
            let sorted = ts.sorted()
            if let t = sorted.first(where: { overrideOf[$0] != nil }) { return overrideOf[t]! }
            return gridOf[sorted[0]] ?? (options.scheme.activation, options.scheme.method)
        }
        for (_, ts) in members.sorted(by: { $0.key < $1.key }) where ts.contains(where: { overrideOf[$0] != nil }) {
            let outside = ts.filter { overrideOf[$0] == nil && g.initializer($0) == nil }.sorted()
            let (grid, _) = setting(of: ts)
            if !outside.isEmpty, grid != (gridOf[outside[0]]?.0 ?? options.scheme.activation) {
                result.warnings.append("custom_setting: \(outside.map { "'\($0)'" }.joined(separator: ", ")) outside the region also get \(grid.dtype.name) "
                                       + "parameters: they share one scale with the region's tensors (data-movement ops, Concat)")
            }
        }

        // Range searches (KL/MSE over the histograms) are independent per tensor: run them
        // concurrently first, then combine per group in a fixed order (deterministic output).
        var asks: [(String, QuantGrid, RangeMethod)] = []
        for (_, ts) in members {
            let (grid, method) = setting(of: ts)
            for t in ts where g.initializer(t) == nil { asks.append((t, grid, method)) }
        }
        let found = parallelMap(asks) { options.range($0.0, $0.1, $0.2) }.map { $0 ?? nil }
        var rangeOf: [String: (ClipRange, String)] = [:]
        for (a, r) in zip(asks, found) { if let r { rangeOf[a.0] = r } }

        var params: [String: GraphQuantPlan.Tensor] = [:]
        for (_, ts) in members.sorted(by: { $0.key < $1.key }) {
            var lo = 0.0, hi = 0.0
            var any = false
            var methods = Set<String>()
            let (grid, _) = setting(of: ts)
            var quantizable: [String] = []
            let fixed = Set(ts.filter { options.fixedRange($0) && rangeOf[$0] != nil })
            for t in ts.sorted() {
                if !fixed.isEmpty && !fixed.contains(t) {
                    // Shares the set range: quantized with it, its own range left out.
                    if g.initializer(t) == nil || g.initializer(t)?.dtype == .float { quantizable.append(t) }
                    continue
                }
                if let c = g.initializer(t) {
                    guard c.dtype == .float else { continue }
                    let v = c.floats()
                    lo = min(lo, Double(v.min() ?? 0))
                    hi = max(hi, Double(v.max() ?? 0))
                    methods.insert("constant")
                } else if let (r, m) = rangeOf[t] {
                    lo = min(lo, r.lo)
                    hi = max(hi, r.hi)
                    methods.insert(m)
                } else {
                    continue
                }
                any = true
                quantizable.append(t)
            }
            guard any else { continue }
            let range = ClipRange(lo: lo, hi: hi)
            var (scale, zp) = grid.parameters(for: range)
            if options.scheme.hardware?.scale != nil {
                let error: ((Double, Int) -> Double?)? = options.activationError.map { f in { s, z in
                    let parts = quantizable.compactMap { f($0, grid, s, z) }
                    return parts.isEmpty ? nil : parts.reduce(0, +)
                } }
                (scale, zp) = try formatScale(scale, zeroPoint: zp, range: range, grid: grid, what: "activation '\(quantizable[0])'", error: error, result: &result)
            }
            for t in quantizable { params[t] = GraphQuantPlan.Tensor(grid: grid, scale: scale, zeroPoint: zp, range: range,
                                                                     method: methods.sorted().joined(separator: "+"), group: groups.find(t)) }
        }
        return GraphQuantPlan(tensors: params, rules: rules, floatRun: floatRun, floatProduced: floatProduced, keptFloat: keptFloat,
                              rounded: rounded, weightGranularity: weightGranularity, weightBits: weightBits)
    }

    /// Carries out `plan` on `g`: Q/DQ pairs for its tensors, quantized weights and biases for
    /// its rules (recording what each DequantizeLinear stands for), fp16/bf16 rounding, and the
    /// protection of float Convs from ONNX Runtime's own weight quantization. Returns whether a
    /// com.microsoft Q/DQ was written.
    func apply(_ plan: GraphQuantPlan, to g: Graph, main: Bool, names: inout NameAllocator, result: inout Result) throws -> Bool {
        let index = GraphIndex(g)
        let params = plan.tensors, floatProduced = plan.floatProduced, floatRun = plan.floatRun
        // Values a body reads from enclosing graphs are float sources, like graph inputs.
        let outerReads = main ? [] : Set(g.outerScopeReads)
        var qdqDomain = ""  // of every Q/DQ when the whole model is 16-bit below opset 21
        let opset = model.opsets[""] ?? 13
        if options.scheme.activation.bits == 16 && opset < 21 { qdqDomain = "com.microsoft" }
        // 16-bit Q/DQ below opset 21 is ONNX Runtime's com.microsoft contrib op (also for a
        // custom_setting's 16-bit region in an 8-bit model).
        var usesMicrosoftDomain = !qdqDomain.isEmpty
        for (t, p) in params.sorted(by: { $0.key < $1.key }) {
            let (grid, scale, zp, range, method) = (p.grid, p.scale, p.zeroPoint, p.range, p.method)
            let floatSource = floatProduced.contains(t) || g.inputs.contains { $0.name == t } || outerReads.contains(t)
            let floatReaders: ((Node) -> Bool)? = floatSource ? { floatRun.contains(ObjectIdentifier($0)) } : nil
            let domain = grid.bits > 8 && opset < 21 ? "com.microsoft" : qdqDomain
            usesMicrosoftDomain = usesMicrosoftDomain || !domain.isEmpty
            if let dq = insertQDQ(t, in: g, grid: grid, scale: scale, zp: zp, domain: domain, names: &names, index: index, floatReaders: floatReaders) {
                result.dequantized[dq] = t
            }
            result.parameters[t] = TensorQuantParameters(role: .activation, dtype: grid.dtype.name, scale: [scale], zeroPoint: [zp],
                                                          axis: nil, threshold: [range.lo, range.hi], method: method)
        }
        for (n, rule) in plan.rules {
            // A weight computed at run time (no `weight`, input 1 quantized as an activation)
            // still has its constant bias quantized.
            guard let w = rule.weight ?? rule.bias.map({ _ in (index: 1, axis: -1) }) else {
                if rule.kind == .compute { result.quantizedNodes.append(n.name) }
                continue
            }
            // Weights need the activation input's scale for the bias; the dequantized input is
            // what the node reads now.
            let inputScale = params[originalName(n.inputs[0], result)]?.scale
            // A weight computed at run time is quantized as an activation (one scale).
            let weightScale = w.index < n.inputs.count && g.initializer(n.inputs[w.index]) == nil ? params[originalName(n.inputs[w.index], result)]?.scale : nil
            let weightName = w.index < n.inputs.count ? n.inputs[w.index] : ""
            try quantizeWeights(n, in: g, weightIndex: w.index, axis: w.axis, biasIndex: rule.bias, inputScale: inputScale, activationWeightScale: weightScale,
                                granularity: plan.weightGranularity[ObjectIdentifier(n)] ?? options.scheme.weightGranularity,
                                weightGrid: plan.weightBits[ObjectIdentifier(n)].map { QuantGrid(bits: $0, signed: options.scheme.weight.signed, symmetric: options.scheme.weight.symmetric) } ?? options.scheme.weight,
                                inputSpan: params[originalName(n.inputs[0], result)].map { max($0.zeroPoint - $0.grid.qmin, $0.grid.qmax - $0.zeroPoint) },
                                domain: qdqDomain, opset: opset, names: &names, result: &result)
            if let second = rule.secondWeight, second < n.inputs.count, g.initializer(n.inputs[second]) != nil {
                try quantizeWeights(n, in: g, weightIndex: second, axis: w.axis, biasIndex: nil, inputScale: nil,
                                    granularity: plan.weightGranularity[ObjectIdentifier(n)] ?? options.scheme.weightGranularity,
                                    weightGrid: plan.weightBits[ObjectIdentifier(n)].map { QuantGrid(bits: $0, signed: options.scheme.weight.signed, symmetric: options.scheme.weight.symmetric) } ?? options.scheme.weight,
                                    domain: qdqDomain, opset: opset, names: &names, result: &result)
            }
            if weightScale == nil, let p = result.parameters[weightName], p.role == .weight {
                result.granularity[ObjectIdentifier(n)] = p.blockSize.map { .group($0) } ?? (p.axis == nil ? .tensor : .channel)
            }
            if n.opType == "MatMul", let s_in = inputScale {
                quantizeMatMulBias(n, in: g, index: index, inputScale: s_in, keptFloat: plan.keptFloat, domain: qdqDomain, opset: opset, names: &names, result: &result)
            }
            result.quantizedNodes.append(n.name)
        }
        var storedAs: [String: String] = [:]
        if plan.rounded.contains(where: { $0.1 == .bf16 }) && opset < 13 {
            throw QuantKitError("QK7005", "bf16 ops need opset 13 (Cast to bfloat16); the model is opset \(opset)",
                                fix: "use fp16 for this model, or convert it to opset 13 or later first")
        }
        let roundIndex = GraphIndex(g)
        for (n, precision) in plan.rounded { roundFloat(n, to: precision, in: g, index: roundIndex, names: &names, constants: &storedAs) }
        let (unprotected, perAxisMicrosoft) = keepFloatComputeOutOfRuntimeQuantization(g, floatRun: floatRun, opset: opset, names: &names)
        usesMicrosoftDomain = usesMicrosoftDomain || perAxisMicrosoft
        if !unprotected.isEmpty {
            result.warnings.append("\(unprotected.map(\.label).joined(separator: ", ")) kept float but between quantized tensors: ONNX Runtime "
                                   + "(1.20+) will quantize \(unprotected.count == 1 ? "its" : "their") weight per tensor and run \(unprotected.count == 1 ? "it" : "them") "
                                   + "as an integer kernel (one input channel, or a weight not in this graph); keep the node before or after it float too")
        }
        Preparation.removeUnusedInitializers(g)
        try g.sortTopologically()
        return usesMicrosoftDomain
    }

    /// A MatMul with a float output whose one reader is an Add of a constant bias of shape [N]
    /// (or [1, ..., 1, N], Magika's [1, 214]): ONNX Runtime's MatMulAddFusion turns the pair into a Gemm, and a Gemm with a
    /// float bias matches no QDQ selector, so it would run float (PP-OCR's classifier head).
    /// The bias gets an int32 DequantizeLinear with scale s_input·s_weight, as a Gemm's: the
    /// fused Gemm becomes QGemm, and where ONNX Runtime does not fuse (an input of unknown
    /// shape), MatMulIntegerToFloat runs and the Add reads the same values.
    /// An Add the user's settings keep float (`keptFloat`: excluded, truncated, a float region)
    /// keeps its float bias.
    func quantizeMatMulBias(_ n: Node, in g: Graph, index: GraphIndex, inputScale s_in: Double, keptFloat: Set<ObjectIdentifier>, domain: String,
                            opset: Int, names: inout NameAllocator, result: inout Result) {
        guard let y = n.outputs.first, !g.outputs.contains(where: { $0.name == y }), n.inputs.count > 1,
              let wp = result.parameters[originalName(n.inputs[1], result)], wp.role == .weight, wp.blockSize == nil,
              options.scheme.activation.float8 == nil, options.scheme.weight.float8 == nil else { return }
        let readers = index.consumers(of: y)
        guard readers.count == 1, let add = readers.first, add.isStandard, add.opType == "Add", add.inputs.count == 2,
              !keptFloat.contains(ObjectIdentifier(add)) else { return }
        let bi = add.inputs[0] == y ? 1 : 0
        guard add.inputs[1 - bi] == y, let b = g.initializer(add.inputs[bi]), b.dtype == .float else { return }
        let channels = wp.scale.count
        let n_out = b.count
        guard b.rank >= 1, b.shape.dropLast().allSatisfy({ $0 == 1 }), channels == 1 || channels == n_out else { return }
        let bv = b.floats()
        let scales = (0..<n_out).map { s_in * wp.scale[channels == 1 ? 0 : $0] }
        guard zip(bv, scales).allSatisfy({ $1 > 0 && abs(Double($0)) / $1 < Double(Int32.max - 1) }) else { return }
        emitBias(add, in: g, biasIndex: bi, values: bv, scales: scales, perChannel: channels > 1, corrected: false, domain: domain, opset: opset,
                 names: &names, result: &result, shape: b.shape)
    }

    /// The ratio of the widest to the narrowest input range of a Concat (calibration min/max,
    /// widened to include 0; float constants by their values) when it is over the control's
    /// `concatSplitRatio` (default 16): one shared scale would leave the narrow input fewer
    /// than 256/ratio of its levels, and a YOLO-style head's 0-1 scores beside 0-320 pixel
    /// boxes none. Nil when under it, when splitting is off (ratio 0) or fewer than two inputs
    /// have a range.
    func concatRangeRatio(_ n: Node, _ g: Graph) -> Double? {
        let limit = options.control.concatSplitRatio ?? QuantControl.defaultConcatSplitRatio
        guard limit > 0 else { return nil }
        var widths: [Double] = []
        for t in n.inputs where !t.isEmpty {
            var lo = 0.0, hi = 0.0
            if let c = g.initializer(t) {
                guard c.dtype == .float else { continue }
                let v = c.floats()
                lo = min(0, Double(v.min() ?? 0))
                hi = max(0, Double(v.max() ?? 0))
            } else if let (r, _) = options.range(t, options.scheme.activation, .minMax) {
                lo = min(0, r.lo)
                hi = max(0, r.hi)
            } else {
                continue
            }
            if hi - lo > 0, (hi - lo).isFinite { widths.append(hi - lo) }
        }
        guard widths.count >= 2, let wide = widths.max(), let narrow = widths.min() else { return nil }
        let ratio = wide / narrow
        return ratio > limit ? ratio : nil
    }

    /// The tensor a DequantizeLinear output this rewrite inserted stands for (else `t` itself).
    func originalName(_ t: String, _ result: Result) -> String {
        result.dequantized[t] ?? t
    }

    /// fp16/bf16 for a node that runs float: each float input (a DequantizeLinear output, a
    /// float constant, a tensor calibration observed) and output goes through
    /// `Cast(to: FORMAT) -> Cast(to: FLOAT)`, so the node computes on values of that format and
    /// produces values of it, as a runtime computing in it would (up to its accumulation).
    /// `x -> n -> y  ==>  x -> Cast -> Cast -> n -> y_FORMAT -> Cast -> Cast -> y`
    /// A float constant input is stored in the format once (`constants`: per initializer, its
    /// float view) and read through one Cast back to float: weights take half the bytes.
    /// `index`: built before any rounding (producers of the original values are what it reads).
    /// Inputs that are parameters rather than values (Resize/Upsample scales and roi, Range)
    /// keep float32: rounding a scale changes an output's shape.
    func roundFloat(_ n: Node, to precision: PrecisionPlan.Precision, in g: Graph, index: GraphIndex, names: inout NameAllocator,
                    constants: inout [String: String]) {
        let format = precision == .bf16 ? DType.bfloat16 : DType.float16
        let tag = precision.rawValue
        let parameters: Set<Int> = switch n.opType {
        case "Resize", "Upsample": [1, 2, 3]
        case "Range": [0, 1, 2]
        default: []
        }
        func isFloat(_ t: String) -> Bool {
            if let c = g.initializer(t) { return c.dtype == .float }
            if index.producer[t]?.opType == "DequantizeLinear" { return true }
            if let e = g.valueInfo(for: t)?.tensorType?.elementType { return e == .float }
            return options.range(t, options.scheme.activation, .minMax) != nil
        }
        func pair(from x: String, to y: String, base: String) -> [Node] {
            let mid = names.fresh(base + "_" + tag)
            let down = Node(name: names.fresh(base + "_to_" + tag), opType: "Cast", inputs: [x], outputs: [mid])
            down.setAttribute(.int("to", Int(format.rawValue)))
            let up = Node(name: names.fresh(base + "_from_" + tag), opType: "Cast", inputs: [mid], outputs: [y])
            up.setAttribute(.int("to", Int(DType.float.rawValue)))
            return [down, up]
        }
        for (k, t) in n.inputs.enumerated() where !t.isEmpty && !parameters.contains(k) && isFloat(t) {
            if let c = g.initializer(t), c.dtype == .float {
                if let y = constants[t + "#" + tag] {
                    n.inputs[k] = y
                    continue
                }
                let stored = Tensor(dtype: format, shape: c.shape)
                stored.withUnsafeMutableBufferPointer(as: UInt16.self) { out in
                    for (i, v) in c.floats().enumerated() { out[i] = format == .bfloat16 ? BFloat16.fromFloat(v) : HalfFloat.fromFloat(v) }
                }
                let name = names.fresh(t + "_" + tag)
                g.setInitializer(name, stored)
                let y = names.fresh(t + "_as_float")
                let up = Node(name: names.fresh(t + "_from_" + tag), opType: "Cast", inputs: [name], outputs: [y])
                up.setAttribute(.int("to", Int(DType.float.rawValue)))
                g.nodes.append(up)
                constants[t + "#" + tag] = y
                n.inputs[k] = y
                continue
            }
            let y = names.fresh(t + "_as_" + tag)
            g.nodes += pair(from: t, to: y, base: t)
            n.inputs[k] = y
        }
        for (k, t) in n.outputs.enumerated() where !t.isEmpty && isFloat(t) {
            let raw = names.fresh(t + "_float")
            n.outputs[k] = raw
            g.nodes += pair(from: raw, to: t, base: t)
        }
    }

    enum Suffix {
        static let q = "_QuantizeLinear_Output"
        static let dq = "_DequantizeLinear_Output"
    }
}

/// Union-find over tensor names.
struct UnionFind {
    private var parent: [String: String] = [:]

    func find(_ x: String) -> String {
        var r = x
        while let p = parent[r], p != r { r = p }
        return r
    }

    mutating func union(_ a: String, _ b: String) {
        let ra = find(a), rb = find(b)
        if ra != rb { parent[max(ra, rb)] = min(ra, rb) }
    }
}
