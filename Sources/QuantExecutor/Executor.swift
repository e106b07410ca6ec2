import Foundation
import QuantCore
import QuantIR

/// Identifies a value of the main graph within one `Executor` (an index into its value table).
public typealias ValueID = Int

public struct ExecutorOptions: Sendable {
    /// Threads for intra-operator parallelism (and BLAS).
    public var threads: Int
    public var registry: KernelRegistry
    /// Whether a batch of at least `threads` (and 2) samples runs the sample-wise parts of the
    /// graph one sample at a time, samples spread over the threads (`SampleSplit`); results are
    /// the same as layer by layer. Only without hooks.
    public var splitBatch: Bool
    /// Whether DequantizeLinear → Conv → QuantizeLinear groups compute their integers as one
    /// QLinearConv, the way ONNX Runtime's CPU provider runs QDQ models (`IntegerConv`); off,
    /// every node runs as written.
    public var integerConv: Bool
    /// Bytes one tensor may take when its size comes from input values rather than input
    /// sizes (ConstantOfShape, Expand, Tile, Range, OneHot, broadcasting): larger is QK3006
    /// before anything is allocated, so a hostile model cannot exhaust memory. 8 GiB.
    public var maxTensorBytes: Int

    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, registry: KernelRegistry = .standard,
                splitBatch: Bool = true, integerConv: Bool = false, maxTensorBytes: Int = 8 << 30) {
        self.threads = max(1, threads)
        self.registry = registry
        self.splitBatch = splitBatch
        self.integerConv = integerConv
        self.maxTensorBytes = maxTensorBytes
    }
}

/// Observes (and may replace) every tensor the main graph produces: calibration statistics,
/// error analysis and fake-quant simulation are all hooks.
public protocol ExecutionHook: AnyObject {
    /// Called for each graph input and each node output, in execution order, including values
    /// inside If/Loop/Scan bodies (once per iteration) and subgraph inputs.
    /// Return a tensor to replace the value for all its consumers (and the graph output), or nil
    /// to keep it. Initializers are not reported.
    func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor?
}

/// Numbers the values of a graph and all its subgraph plans into one id space, so hooks see
/// values inside If/Loop/Scan bodies too.
final class PlanTable {
    private(set) var plans: [GraphPlan] = []
    private(set) var size = 0

    func register(_ plan: GraphPlan) {
        plan.idBase = size
        size += plan.names.count
        plans.append(plan)
    }

    func name(of id: Int) -> String? {
        for p in plans where id >= p.idBase && id < p.idBase + p.names.count { return p.names[id - p.idBase] }
        return nil
    }
}

/// A compiled graph: value table, one kernel per node, and when each value can be freed.
public final class GraphPlan {
    public let graph: Graph
    /// Offset of this plan's value ids in the executor-wide id space.
    var idBase = 0
    /// Value names by id.
    public let names: [String]
    let ids: [String: Int]
    let constants: [(Int, Tensor)]
    /// Ids of the graph's runtime inputs, in order (initializer-backed inputs excluded).
    let inputIDs: [Int]
    let outputIDs: [Int]
    /// Values read from enclosing graphs (subgraphs only).
    let outerIDs: [Int]
    let steps: [Step]
    /// Values that die after each step.
    let release: [[Int]]
    /// `steps` with nodes fused (see `Fusion`), used when no hook is attached, and its release
    /// lists.
    let fusedSteps: [Step]
    let fusedRelease: [[Int]]
    /// Sample-wise segments of `fusedSteps` (main graph only).
    let sampleSplit: SampleSplit?

    struct Step {
        let node: Node
        let kernel: Kernel
        let inputs: [Int]  // -1: omitted
        let outputs: [Int]  // -1: omitted
        /// What a fused step computes (e.g. "Conv+Clip"); nil for a plain node.
        var label: String? = nil
    }

    init(graph: Graph, options: ExecutorOptions, opsets: [String: Int], outer: Set<String>, table: PlanTable) throws {
        self.graph = graph
        var names: [String] = []
        var ids: [String: Int] = [:]
        func id(_ n: String) -> Int {
            if let i = ids[n] { return i }
            ids[n] = names.count
            names.append(n)
            return names.count - 1
        }
        var constants: [Int: Tensor] = [:]
        for t in graph.initializers { constants[id(t.name)] = ComputeType.normalize(t.tensor) }
        let runtimeInputs = graph.inputs.filter { !graph.isInitializer($0.name) }
        inputIDs = runtimeInputs.map { id($0.name) }
        let order = try graph.topologicalOrder()
        var steps: [Step] = []
        var defined = Set(graph.inputs.map(\.name)).union(graph.initializers.map(\.name))
        var outerIDs: [Int] = []
        let visible = outer
        for node in order {
            for n in node.inputs + node.subgraphs.flatMap(\.outerScopeReads) where !n.isEmpty && !defined.contains(n) {
                guard visible.contains(n) else {
                    throw QuantKitError("QK1201", "node \(node.label) reads '\(n)', which nothing defines", fix: "the model is malformed; re-export it")
                }
                defined.insert(n)
                outerIDs.append(id(n))
            }
            let opset = opsets[node.isStandard ? "" : node.domain] ?? opsets[""] ?? 1
            guard let factory = options.registry.factory(domain: node.domain, op: node.opType) else {
                throw ExecutorError.unsupported(node, opset: opset)
            }
            // Kernels index their operands by position: refuse a node its schema does not allow.
            try OperatorArity.check(node, opset: opset)
            // What a body may read is computed only for nodes with bodies: a union per node
            // made building a plan quadratic in the number of nodes.
            let ctx = KernelContext(
                node: node, opset: opset, options: options,
                constantLookup: { name in ids[name].flatMap { constants[$0] } },
                compileSubgraph: { g in
                    try GraphPlan(graph: g, options: options, opsets: opsets, outer: visible.union(defined), table: table)
                })
            let kernel: Kernel
            do {
                kernel = try factory(ctx)
            } catch let e as CodedError {
                throw e
            } catch {
                throw ExecutorError.invalid(node, "\(error)")
            }
            // Constant nodes become constants of the plan, so later factories can read them.
            if node.opType == "Constant", node.isStandard, node.outputs.count == 1,
               let t = try kernel.run([], RunEnvironment.compileTime(options))[0] {
                constants[id(node.outputs[0])] = t
                defined.insert(node.outputs[0])
                continue
            }
            steps.append(Step(node: node, kernel: kernel, inputs: node.inputs.map { $0.isEmpty ? -1 : id($0) },
                              outputs: node.outputs.map { $0.isEmpty ? -1 : id($0) }))
            defined.formUnion(node.outputs)
        }
        outputIDs = graph.outputs.map { id($0.name) }
        for o in graph.outputs where !defined.contains(o.name) {
            guard visible.contains(o.name) else {
                throw QuantKitError("QK1205", "graph output '\(o.name)' is not produced", fix: "the model is malformed; re-export it")
            }
            outerIDs.append(ids[o.name]!)
        }
        let keep = Set(outputIDs).union(constants.keys)
        let subgraphReads = Set(steps.flatMap { $0.node.subgraphs.flatMap(\.outerScopeReads) }.compactMap { ids[$0] })
        if options.integerConv {
            steps = IntegerConv.rewrite(steps, constants: constants, names: names, options: options)
        }
        // The fused list starts from the steps left after constant folding; the folded values
        // are constants of the plan (the plain list recomputes them, so hooks see them).
        var folded = constants
        let unfolded = ConstantFolding.fold(steps, &folded, options: options)
        let fused = Fusion.fuse(unfolded, Fusion.Context(
            constants: folded, kept: Set(outputIDs).union(subgraphReads),
            opset: { n in opsets[n.isStandard ? "" : n.domain] ?? opsets[""] ?? 1 }))
        self.release = GraphPlan.releaseLists(steps, count: names.count, keep: keep, ids: ids)
        fusedSteps = fused
        fusedRelease = GraphPlan.releaseLists(fused, count: names.count, keep: keep, ids: ids)
        sampleSplit = outer.isEmpty
            ? SampleSplit(steps: fused, inputs: inputIDs, inputRanks: runtimeInputs.map { $0.tensorType?.shape?.count },
                          constants: folded, kept: Array(Set(outputIDs).union(subgraphReads)))
            : nil
        self.names = names
        self.ids = ids
        self.constants = folded.sorted { $0.key < $1.key }
        self.outerIDs = outerIDs
        self.steps = steps
        table.register(self)
    }

    /// For each step, the values whose last use it is (they are freed after it), and values
    /// produced but never read (freed right after their producer). `keep` never dies.
    static func releaseLists(_ steps: [Step], count: Int, keep: Set<Int>, ids: [String: Int]) -> [[Int]] {
        // Last use of each value: the step reading it (directly or through a subgraph).
        var lastUse = [Int](repeating: -1, count: count)
        for (i, s) in steps.enumerated() {
            for v in s.inputs where v >= 0 { lastUse[v] = i }
            for n in s.node.subgraphs.flatMap(\.outerScopeReads) { if let v = ids[n] { lastUse[v] = i } }
        }
        var release = [[Int]](repeating: [], count: steps.count)
        for (v, i) in lastUse.enumerated() where i >= 0 && !keep.contains(v) { release[i].append(v) }
        for (i, s) in steps.enumerated() {
            for v in s.outputs where v >= 0 && lastUse[v] < 0 && !keep.contains(v) { release[i].append(v) }
        }
        return release
    }

    /// Names of the runtime inputs, in order.
    public var inputNames: [String] { inputIDs.map { names[$0] } }
    public var outputNames: [String] { outputIDs.map { names[$0] } }
}

/// Values of one running graph; subgraph frames read enclosing values through `parent`.
final class Frame {
    let plan: GraphPlan
    var values: [Tensor?]
    let parent: Frame?

    init(plan: GraphPlan, parent: Frame?) {
        self.plan = plan
        self.parent = parent
        values = [Tensor?](repeating: nil, count: plan.names.count)
        for (id, t) in plan.constants { values[id] = t }
        if let parent {
            for id in plan.outerIDs { values[id] = parent.lookup(plan.names[id]) }
        }
    }

    func lookup(_ name: String) -> Tensor? {
        if let id = plan.ids[name], let t = values[id] { return t }
        return parent?.lookup(name)
    }
}

/// What a running kernel can use: the thread budget and subgraph execution.
public struct RunEnvironment {
    public let threads: Int
    let options: ExecutorOptions
    let frame: Frame?
    var hooks: [ExecutionHook] = []
    weak var executor: Executor?
    var profile: ExecutionProfile?

    public static func compileTime(_ options: ExecutorOptions) -> RunEnvironment {
        RunEnvironment(threads: options.threads, options: options, frame: nil)
    }

    /// Runs a compiled subgraph with `inputs` bound to its graph inputs, in this node's scope.
    public func run(_ plan: GraphPlan, inputs: [Tensor?]) throws -> [Tensor] {
        let frame = Frame(plan: plan, parent: self.frame)
        for (k, id) in plan.inputIDs.enumerated() where k < inputs.count { frame.values[id] = inputs[k] }
        if let executor {
            for (k, id) in plan.inputIDs.enumerated() where k < inputs.count {
                guard var t = frame.values[id] else { continue }
                for h in hooks { if let r = h.produced(plan.idBase + id, tensor: t, executor: executor) { t = r } }
                frame.values[id] = t
            }
        }
        try Executor.execute(frame, options: options, hooks: hooks, executor: executor, profile: profile)
        return try plan.outputIDs.map { id in
            guard let t = frame.values[id] else {
                throw QuantKitError("QK3004", "subgraph '\(plan.graph.name)' did not produce '\(plan.names[id])'", fix: "the model is malformed")
            }
            return t
        }
    }
}

/// Wall time per operator type over the runs it is passed to (`Executor.run(_:hooks:profile:)`).
/// Subgraph steps are counted under their own operators as well as inside their If/Loop node.
public final class ExecutionProfile {
    /// Nanoseconds and step count by operator type, or fused label such as "Conv+Clip".
    public private(set) var nanoseconds: [String: UInt64] = [:]
    public private(set) var counts: [String: Int] = [:]
    private let lock = NSLock()

    public init() {}

    func add(_ op: String, nanoseconds ns: UInt64) {
        lock.lock()
        nanoseconds[op, default: 0] += ns
        counts[op, default: 0] += 1
        lock.unlock()
    }
}

/// Runs ONNX models on CPU. Build once per model, run many times; thread-safe for concurrent
/// `run` calls (each run has its own value table).
public final class Executor {
    public let model: Model
    public let plan: GraphPlan
    public let options: ExecutorOptions
    let table = PlanTable()

    public init(model: Model, options: ExecutorOptions = ExecutorOptions()) throws {
        self.model = model
        self.options = options
        plan = try GraphPlan(graph: model.graph, options: options, opsets: model.opsets, outer: [], table: table)
        // GEMMs are split over the executor's own threads (MatrixGEMM); BLAS threads would
        // spin and compete with them for the cores.
        BLAS.setThreads(1)
        _ = MemoryTuning.applied
    }

    /// The name of a value id (main graph or any subgraph).
    public func name(of value: ValueID) -> String { table.name(of: value) ?? "?" }
    /// The id of a value of the main graph, or else of the If/Loop/Scan body that defines it
    /// (a body's reads of enclosing values are not definitions).
    public func id(of name: String) -> ValueID? {
        if let i = plan.ids[name] { return plan.idBase + i }
        for p in table.plans where p !== plan {
            if let i = p.ids[name], !p.outerIDs.contains(i) { return p.idBase + i }
        }
        return nil
    }
    public var inputNames: [String] { plan.inputNames }
    public var outputNames: [String] { plan.outputNames }

    /// Runs the model on `feeds` (by input name) and returns the graph outputs by name.
    /// Float16/bfloat16/double feeds are converted to float32 and outputs converted back to their
    /// declared type.
    ///
    /// With no hooks, adjacent nodes may run fused (see `Fusion`); `profile`, when given,
    /// accumulates the time of each executed step by operator (fused steps by their label).
    public func run(_ feeds: [String: Tensor], hooks: [ExecutionHook] = [], profile: ExecutionProfile? = nil) throws -> [String: Tensor] {
        let frame = Frame(plan: plan, parent: nil)
        let expected = plan.inputNames
        for name in feeds.keys where plan.ids[name] == nil || !expected.contains(name) {
            throw ExecutorError.unknownInput(name, expected: expected)
        }
        for (k, id) in plan.inputIDs.enumerated() {
            let name = expected[k]
            guard let t = feeds[name] else { throw ExecutorError.missingInput(name, expected: expected) }
            try checkFeed(t, info: model.graph.inputs.first { $0.name == name })
            var value = ComputeType.normalize(t)
            for h in hooks { if let r = h.produced(plan.idBase + id, tensor: value, executor: self) { value = r } }
            frame.values[id] = value
        }
        let batch = options.splitBatch ? SampleSplit.batchSize(plan.inputIDs.map { frame.values[$0] }, threads: options.threads) : nil
        try Executor.execute(frame, options: options, hooks: hooks, executor: self, profile: profile, batch: batch)
        var out: [String: Tensor] = [:]
        for (k, id) in plan.outputIDs.enumerated() {
            guard let t = frame.values[id] else { continue }
            let declared = model.graph.outputs[k].tensorType?.elementType
            out[plan.names[id]] = declared.map { ComputeType.restore(t, to: $0) } ?? t
        }
        return out
    }

    func checkFeed(_ t: Tensor, info: ValueInfo?) throws {
        guard let type = info?.tensorType else { return }
        let name = info!.name
        if let e = type.elementType, ComputeType.internalType(e) != ComputeType.internalType(t.dtype) {
            throw ExecutorError.inputMismatch(name, "expects \(e) but got \(t.dtype)")
        }
        if let shape = type.shape {
            guard shape.count == t.rank else {
                throw ExecutorError.inputMismatch(name, "expects rank \(shape.count) \(shape) but got shape \(t.shape)")
            }
            for (d, (want, have)) in zip(shape, t.shape).enumerated() {
                if case .value(let v) = want, v != have, v > 0 {
                    throw ExecutorError.inputMismatch(name, "dimension \(d) must be \(v) but is \(have) (shape \(t.shape))")
                }
            }
        }
    }

    static func execute(_ frame: Frame, options: ExecutorOptions, hooks: [ExecutionHook], executor: Executor?,
                        profile: ExecutionProfile? = nil, batch: Int? = nil) throws {
        let plan = frame.plan
        var env = RunEnvironment(threads: options.threads, options: options, frame: frame)
        env.hooks = hooks
        env.executor = executor
        env.profile = profile
        // Fused nodes never materialize their intermediate values, so hooks get the plain plan.
        let fused = hooks.isEmpty
        let steps = fused ? plan.fusedSteps : plan.steps
        let release = fused ? plan.fusedRelease : plan.release
        let split = fused ? batch.flatMap { n in plan.sampleSplit.map { ($0, n) } } : nil
        var i = 0
        while i < steps.count {
            if let (s, n) = split, let segment = s.segments[i] {
                // The free steps run first; what they free waits until the segment is done
                // (a sample-wise step before one of them in plan order may read it).
                for k in segment.free { try runStep(k, steps, release, frame, env, releasing: false) }
                if try !SampleSplit.run(segment, batch: n, steps: steps, release: release, frame: frame, env: env) {
                    for k in segment.steps { try runStep(k, steps, release, frame, env) }
                }
                for k in segment.free { for id in release[k] { frame.values[id] = nil } }
                i = segment.end
                continue
            }
            try runStep(i, steps, release, frame, env)
            i += 1
        }
    }

    /// Runs step `i` of `steps` in `frame`, passes its outputs through the hooks and (when
    /// `releasing`) frees the values whose last use it is.
    static func runStep(_ i: Int, _ steps: [GraphPlan.Step], _ release: [[Int]], _ frame: Frame, _ env: RunEnvironment,
                        releasing: Bool = true) throws {
        let step = steps[i]
        let inputs = step.inputs.map { $0 < 0 ? nil : frame.values[$0] }
        let outputs: [Tensor?]
        let start = env.profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
        do {
            outputs = try step.kernel.run(inputs, env)
        } catch let e as CodedError {
            throw e
        } catch {
            throw ExecutorError.invalid(step.node, "\(error)")
        }
        if let profile = env.profile {
            profile.add(step.label ?? step.node.opType, nanoseconds: DispatchTime.now().uptimeNanoseconds - start)
        }
        for (k, id) in step.outputs.enumerated() where id >= 0 {
            guard k < outputs.count, var t = outputs[k] else { continue }
            if let executor = env.executor {
                for h in env.hooks { if let r = h.produced(frame.plan.idBase + id, tensor: t, executor: executor) { t = r } }
            }
            frame.values[id] = t
        }
        if releasing { for id in release[i] { frame.values[id] = nil } }
    }
}
