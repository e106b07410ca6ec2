import Foundation
import QuantCore
import QuantIR

/// Image-by-image execution of batched runs: the runs of steps that compute every sample
/// (index along axis 0) of their outputs from the same sample of their inputs are executed
/// one sample at a time, the whole run for one sample before the next, with the samples spread
/// over the executor's threads (each sample single-threaded).
///
/// Why: layer by layer, a batch of 8 EfficientNet-Lite0 images passes ~4 images' activations
/// through each core's cache between two layers (everything is evicted before it is read
/// again), and every kernel ends in a synchronization of the threads; one image at a time per
/// thread keeps a layer's output in the core's cache for the next layer and synchronizes once
/// per run of steps.
///
/// A step is *sample-wise* when its operator is one of the listed ones, at least one input
/// is batched (a graph input, or an output of a sample-wise step), its other inputs do not
/// depend on the graph inputs (*free*: constants and values computed from constants only),
/// and its attributes keep axis 0 apart (MaxPool without Indices, Concat on another axis,
/// Pad with zero pads on axis 0 — checked at run time, element-wise operands that broadcast
/// only over non-batch axes). Fused steps are sample-wise when all their parts are. Free steps
/// between sample-wise steps run before the segment (they read no batched value). Anything
/// else (Shape, Reshape, Gemm, ...) ends a segment and runs on the whole batch as before.
struct SampleSplit {
    /// A maximal run of sample-wise steps (with the free steps interleaved among them).
    struct Segment {
        /// Free steps to run first, then the sample-wise steps, as indices into the step list.
        let free: [Int]
        let steps: [Int]
        /// Values the sample-wise steps read from before the segment, and whether each is batched.
        let inputs: [(id: Int, batched: Bool)]
        /// Values produced by the segment and used after it (all batched).
        let outputs: [Int]
        /// `pads` inputs whose axis-0 entries must be zero for the split to be exact.
        let padGuards: [Int]
        /// One past the last step of the segment.
        var end: Int { steps.last! + 1 }
    }

    /// Segments by the index of their first sample-wise step.
    let segments: [Int: Segment]

    enum Kind { case free, sampleWise, other }

    static let unary: Set<String> = [
        "Relu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu", "Softplus", "Softsign",
        "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor", "Ceil", "Erf", "Identity", "Gelu", "Mish", "Sin", "Cos",
    ]
    static let windowed: Set<String> = ["Conv", "AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"]
    static let binary: Set<String> = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"]

    /// Nil when no step is sample-wise or some graph input's rank is not declared.
    init?(steps: [GraphPlan.Step], inputs: [Int], inputRanks: [Int?], constants: [Int: Tensor], kept: [Int]) {
        var kind: [Int: Kind] = [:]
        var rank: [Int: Int] = [:]
        for id in constants.keys { kind[id] = .free }
        for (id, r) in zip(inputs, inputRanks) {
            guard let r, r >= 1 else { return nil }
            kind[id] = .sampleWise
            rank[id] = r
        }
        var guards: [Int: [Int]] = [:]
        var kinds: [Kind] = []
        for s in steps {
            var padGuards: [Int] = []
            let k = SampleSplit.classify(s, &kind, &rank, constants, &padGuards)
            kinds.append(k)
            if !padGuards.isEmpty { guards[kinds.count - 1] = padGuards }
        }
        guard kinds.contains(.sampleWise) else { return nil }
        // Segments: from a sample-wise step up to the last sample-wise step before an `other`.
        var lastUse = [Int: Int]()
        for (i, s) in steps.enumerated() { for v in s.inputs where v >= 0 { lastUse[v] = i } }
        for v in kept { lastUse[v] = Int.max }
        var segments: [Int: Segment] = [:]
        var i = 0
        while i < steps.count {
            guard kinds[i] == .sampleWise else { i += 1; continue }
            var free: [Int] = [], sample: [Int] = [], pendingFree: [Int] = []
            var j = i
            while j < steps.count, kinds[j] != .other {
                if kinds[j] == .free { pendingFree.append(j) } else {
                    free += pendingFree
                    pendingFree = []
                    sample.append(j)
                }
                j += 1
            }
            let end = sample.last! + 1
            var produced = Set<Int>(), inputs: [(id: Int, batched: Bool)] = [], seen = Set<Int>(), outputs: [Int] = []
            var padGuards: [Int] = []
            for k in sample {
                for v in steps[k].inputs where v >= 0 && !produced.contains(v) && seen.insert(v).inserted {
                    inputs.append((v, kind[v] == .sampleWise))
                }
                for v in steps[k].outputs where v >= 0 {
                    produced.insert(v)
                    if let u = lastUse[v], u >= end { outputs.append(v) }
                }
                padGuards += guards[k] ?? []
            }
            segments[i] = Segment(free: free, steps: sample, inputs: inputs, outputs: outputs, padGuards: padGuards)
            i = end
        }
        self.segments = segments
    }

    /// The kind of step `s` given its inputs' kinds; records its outputs' kinds and ranks.
    static func classify(_ s: GraphPlan.Step, _ kind: inout [Int: Kind], _ rank: inout [Int: Int], _ constants: [Int: Tensor],
                         _ padGuards: inout [Int]) -> Kind {
        let ins = s.inputs.filter { $0 >= 0 }
        var k: Kind
        if !s.node.subgraphs.isEmpty || ins.contains(where: { kind[$0] == nil || kind[$0] == .other }) {
            k = .other
        } else if !ins.contains(where: { kind[$0] == .sampleWise }) {
            k = .free
        } else if let fused = s.kernel as? FusedKernel {
            // Sample-wise when every part is; the parts' intermediate values get kinds too.
            k = .sampleWise
            for p in fused.parts where classify(p, &kind, &rank, constants, &padGuards) == .other { k = .other }
        } else if let r = sampleWiseRank(s, kind, rank, constants, &padGuards) {
            k = .sampleWise
            for v in s.outputs where v >= 0 { rank[v] = r }
        } else {
            k = .other
        }
        for v in s.outputs where v >= 0 { kind[v] = k }
        return k
    }

    /// The output rank when `s` (which reads at least one batched value) is sample-wise.
    static func sampleWiseRank(_ s: GraphPlan.Step, _ kind: [Int: Kind], _ rank: [Int: Int], _ constants: [Int: Tensor],
                               _ padGuards: inout [Int]) -> Int? {
        let n = s.node
        guard n.isStandard, let x = s.inputs.first, x >= 0, kind[x] == .sampleWise, let r = rank[x] else {
            return binaryRank(s, kind, rank, constants)
        }
        let rest = s.inputs.dropFirst().filter { $0 >= 0 }
        let restFree = rest.allSatisfy { kind[$0] == .free }
        switch n.opType {
        case _ where unary.contains(n.opType):
            return restFree ? r : nil
        case _ where windowed.contains(n.opType):
            // MaxPool's Indices are flat offsets into the whole batch.
            return restFree && s.outputs.filter({ $0 >= 0 }).count == 1 ? r : nil
        case "Pad":
            guard restFree, s.inputs.count >= 2, s.inputs[1] >= 0, s.inputs.count < 4 || s.inputs[3] < 0 else { return nil }
            padGuards.append(s.inputs[1])
            return r
        case "Concat":
            guard let axis = n.attribute("axis")?.int, let a = Shapes.axis(axis, rank: r), a != 0,
                  s.inputs.allSatisfy({ $0 >= 0 && kind[$0] == .sampleWise && rank[$0] == r }) else { return nil }
            return r
        default:
            return binaryRank(s, kind, rank, constants)
        }
    }

    /// Element-wise binary operators: both operands batched with the same rank, or one batched
    /// and the other a constant that broadcasts over non-batch axes only.
    static func binaryRank(_ s: GraphPlan.Step, _ kind: [Int: Kind], _ rank: [Int: Int], _ constants: [Int: Tensor]) -> Int? {
        guard s.node.isStandard, binary.contains(s.node.opType), s.inputs.count == 2, s.inputs.allSatisfy({ $0 >= 0 }) else { return nil }
        let batched = s.inputs.filter { kind[$0] == .sampleWise }
        guard let r = batched.first.flatMap({ rank[$0] }), batched.allSatisfy({ rank[$0] == r }) else { return nil }
        for v in s.inputs where kind[v] != .sampleWise {
            guard let t = constants[v], t.rank < r || (t.rank == r && t.shape[0] == 1) else { return nil }
        }
        return r
    }
}

extension SampleSplit {
    /// The batch size to split runs by: every runtime input has the same dimension 0, at least
    /// 2 and at least `threads`; nil otherwise (the run stays layer by layer).
    static func batchSize(_ inputs: [Tensor?], threads: Int) -> Int? {
        guard let first = inputs.first, let n = first?.shape.first, n >= 2, n >= threads,
              inputs.allSatisfy({ $0?.shape.first == n }) else { return nil }
        return n
    }

    /// Runs `segment` sample by sample (samples over `env.threads` threads, each sample
    /// single-threaded) and stores the concatenated outputs in `frame`; false (nothing run)
    /// when a batched input does not split into `batch` byte-aligned samples or a Pad pads
    /// axis 0.
    static func run(_ segment: Segment, batch n: Int, steps: [GraphPlan.Step], release: [[Int]], frame: Frame,
                    env: RunEnvironment) throws -> Bool {
        for (id, batched) in segment.inputs where batched {
            guard let t = frame.values[id], t.shape.first == n, t.dtype != .string, t.dtype.bitWidth % 8 == 0 else { return false }
        }
        for id in segment.padGuards {
            guard let pads = frame.values[id], pads.dtype.isInteger, pads.count % 2 == 0, pads.count >= 2 else { return false }
            let p = pads.intValues()
            guard p[0] == 0, p[p.count / 2] == 0 else { return false }
        }
        var single = RunEnvironment(threads: 1, options: env.options, frame: nil)
        single.profile = env.profile
        var results = [[Tensor?]](repeating: [], count: n)
        var failure: Error?
        let lock = NSLock()
        results.withUnsafeMutableBufferPointer { out in
            parallelFor(n, threads: env.threads) { samples in
                for s in samples {
                    let f = Frame(plan: frame.plan, parent: frame.parent)
                    for (id, batched) in segment.inputs {
                        f.values[id] = batched ? frame.values[id].map { $0.items(from: s, count: 1) } : frame.values[id]
                    }
                    do {
                        for k in segment.steps { try Executor.runStep(k, steps, release, f, single) }
                    } catch {
                        lock.lock()
                        if failure == nil { failure = error }
                        lock.unlock()
                        return
                    }
                    out[s] = segment.outputs.map { f.values[$0] }
                }
            }
        }
        if let failure { throw failure }
        for (k, id) in segment.outputs.enumerated() { frame.values[id] = concatenate(results.map { $0[k] }) }
        for k in segment.steps { for id in release[k] { frame.values[id] = nil } }
        return true
    }

    /// The parts stacked along dimension 0 (same type and trailing shape), or nil when one is
    /// missing.
    static func concatenate(_ parts: [Tensor?]) -> Tensor? {
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        let joined = Tensor.joined(parts.map { $0! })
        precondition(joined != nil, "sample-wise step produced samples of different shapes")
        return joined
    }
}
