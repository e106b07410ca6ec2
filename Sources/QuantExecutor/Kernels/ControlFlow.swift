import QuantCore
import QuantIR

/// Control flow: If, Loop and Scan. Their subgraphs are compiled once, in the factory; at run
/// time each iteration runs the compiled plan in the node's scope (subgraphs read outer values
/// directly). Sequence- and optional-valued loop state is out of the executor's scope.
enum ControlFlowKernels {
    static let all: [String: KernelFactory] = [
        "If": ifKernel,
        "Loop": loop,
        "Scan": scan,
    ]

    /// `If` (1–23): runs `then_branch` when the single element of `cond` is true, else
    /// `else_branch`; the branch outputs are the node's outputs.
    static func ifKernel(_ ctx: KernelContext) throws -> Kernel {
        let thenBranch = try ctx.subgraph("then_branch")
        let elseBranch = try ctx.subgraph("else_branch")
        let outputs = ctx.node.outputs.count
        for plan in [thenBranch, elseBranch] where plan.outputNames.count != outputs {
            throw ctx.invalid("branch '\(plan.graph.name)' has \(plan.outputNames.count) outputs, the node \(outputs)")
        }
        return ClosureKernel { inputs, env in
            guard let cond = inputs[0], cond.count == 1 else { throw ctx.invalid("cond must hold exactly one element") }
            return try env.run(cond.scalarAsDouble(at: 0) != 0 ? thenBranch : elseBranch, inputs: [])
        }
    }

    /// `Loop` (1–23): `for i in 0..<M while cond { (cond, v...) , scan... = body(i, cond, v...) }`.
    /// M and cond are both optional (not both absent); when cond is absent the body's condition
    /// output is ignored. Outputs are the final loop-carried values, then each scan output of
    /// every iteration stacked along a new axis 0.
    static func loop(_ ctx: KernelContext) throws -> Kernel {
        let body = try ctx.subgraph("body")
        let carriedCount = max(0, ctx.node.inputs.count - 2)
        let scanCount = ctx.node.outputs.count - carriedCount
        guard scanCount >= 0, body.inputNames.count == 2 + carriedCount, body.outputNames.count == 1 + carriedCount + scanCount else {
            throw ctx.invalid("body has \(body.inputNames.count) inputs and \(body.outputNames.count) outputs for \(carriedCount) loop-carried values and \(scanCount) scan outputs")
        }
        let hasM = ctx.hasInput(0), hasCond = ctx.hasInput(1)
        guard hasM || hasCond else { throw ctx.unsupported("a Loop without trip count and condition (it never ends)") }
        let emptyScans = body.graph.outputs[(1 + carriedCount)...].map(emptyStack)
        return ClosureKernel { inputs, env in
            let maxTrip = hasM ? inputs[0].map { $0.int64s().first ?? 0 } ?? 0 : Int64.max
            var cond = hasCond ? (inputs[1].map { $0.scalarAsDouble(at: 0) != 0 } ?? true) : true
            var carried: [Tensor?] = Array(inputs.dropFirst(2))
            var scans = [[Tensor]](repeating: [], count: scanCount)
            var i: Int64 = 0
            while i < maxTrip && cond {
                let counters: [Tensor?] = [Tensor(shape: [], values: [i]), Tensor(shape: [], values: [cond])]
                let outs = try env.run(body, inputs: counters + carried)
                if hasCond { cond = outs[0].scalarAsDouble(at: 0) != 0 }
                for k in 0..<carriedCount { carried[k] = outs[1 + k] }
                for k in 0..<scanCount { scans[k].append(outs[1 + carriedCount + k]) }
                i += 1
            }
            let stacked: [Tensor?] = try scans.enumerated().map { k, parts in
                parts.isEmpty ? emptyScans[k] : try stack(parts, axis: 0, ctx)
            }
            return carried + stacked
        }
    }

    /// `Scan` (8–25). Opset 9+: inputs are N initial states then M scan inputs, each sliced along
    /// `scan_input_axes` (default 0) forward or backward (`scan_input_directions`); each
    /// iteration maps (states, slices) to (states, scan output slices), and the slices are
    /// stacked along `scan_output_axes` (in reverse order where `scan_output_directions` is 1).
    /// Opset 8: a leading optional `sequence_lens` input, every input has a batch axis 0 and
    /// scans along axis 1 (`directions`); shorter sequences leave zeros in the scan outputs.
    static func scan(_ ctx: KernelContext) throws -> Kernel {
        let body = try ctx.subgraph("body")
        guard let scanInputs = ctx.int("num_scan_inputs"), scanInputs >= 1 else { throw ctx.invalid("num_scan_inputs is required") }
        let batched = ctx.opset < 9
        let stateCount = ctx.node.inputs.count - scanInputs - (batched ? 1 : 0)
        let scanOutputs = ctx.node.outputs.count - stateCount
        guard stateCount >= 0, scanOutputs >= 0, body.inputNames.count == stateCount + scanInputs,
              body.outputNames.count == stateCount + scanOutputs else {
            throw ctx.invalid("body inputs/outputs do not match \(stateCount) states, \(scanInputs) scan inputs, \(scanOutputs) scan outputs")
        }
        let inAxes = ctx.ints("scan_input_axes") ?? [Int](repeating: 0, count: scanInputs)
        let inDirs = ctx.ints(batched ? "directions" : "scan_input_directions") ?? [Int](repeating: 0, count: scanInputs)
        let outAxes = ctx.ints("scan_output_axes") ?? [Int](repeating: 0, count: scanOutputs)
        let outDirs = ctx.ints("scan_output_directions") ?? [Int](repeating: 0, count: scanOutputs)
        guard inAxes.count == scanInputs, inDirs.count == scanInputs, outAxes.count == scanOutputs, outDirs.count == scanOutputs else {
            throw ctx.invalid("scan axis/direction attributes must have one entry per scan input/output")
        }
        let spec = ScanSpec(body: body, states: stateCount, inAxes: inAxes, inReverse: inDirs.map { $0 == 1 }, outAxes: outAxes,
                            outReverse: outDirs.map { $0 == 1 }, outputs: scanOutputs)
        if !batched {
            return ClosureKernel { inputs, env in
                let all = try inputs.map { t -> Tensor in guard let t else { throw ctx.invalid("Scan inputs are required") }; return t }
                let (states, outs) = try spec.run(Array(all[..<stateCount]), Array(all[stateCount...]), length: nil, ctx, env)
                return states + outs
            }
        }
        return ClosureKernel { inputs, env in
            let lens = inputs[0]?.intValues()
            let all = try inputs.dropFirst().map { t -> Tensor in guard let t else { throw ctx.invalid("Scan inputs are required") }; return t }
            guard let batch = all.first?.shape.first else { throw ctx.invalid("inputs need a batch axis") }
            let maxLen = all.count > stateCount && all[stateCount].rank > 1 ? all[stateCount].shape[1] : 0
            var perBatch: [[Tensor]] = []
            for b in 0..<batch {
                let slices = try all.map { try slice($0, axis: 0, index: b, ctx) }
                let length = lens.map { $0[b] } ?? maxLen
                let (states, outs) = try spec.run(Array(slices[..<stateCount]), Array(slices[stateCount...]), length: length, ctx, env)
                perBatch.append(try states + outs.map { try padAxis0($0, to: maxLen, ctx) })
            }
            return try (0..<(stateCount + scanOutputs)).map { k in try stack(perBatch.map { $0[k] }, axis: 0, ctx) }
        }
    }

    /// A Scan body with its slicing and stacking directions.
    struct ScanSpec {
        let body: GraphPlan
        let states: Int
        let inAxes: [Int], inReverse: [Bool], outAxes: [Int], outReverse: [Bool]
        let outputs: Int

        /// Runs `length` iterations (default: the scan inputs' length).
        func run(_ initial: [Tensor], _ scanned: [Tensor], length: Int?, _ ctx: KernelContext, _ env: RunEnvironment) throws -> ([Tensor], [Tensor]) {
            let axes = try zip(scanned, inAxes).map { t, a in
                guard let v = Shapes.axis(a, rank: t.rank), t.rank > 0 else { throw ctx.invalid("scan input axis \(a) out of range for \(t.shape)") }
                return v
            }
            let full = zip(scanned, axes).map { $0.shape[$1] }
            guard let t0 = full.first, full.allSatisfy({ $0 == t0 }) else { throw ctx.invalid("scan inputs have different lengths \(full)") }
            let steps = min(length ?? t0, t0)
            var state = initial
            var parts = [[Tensor]](repeating: [], count: outputs)
            for t in 0..<steps {
                let slices = try (0..<scanned.count).map { j in
                    try slice(scanned[j], axis: axes[j], index: inReverse[j] ? steps - 1 - t : t, ctx)
                }
                let outs = try env.run(body, inputs: state + slices)
                state = Array(outs[..<states])
                for k in 0..<outputs { parts[k].append(outs[states + k]) }
            }
            let stacked = try (0..<outputs).map { k -> Tensor in
                let seq = outReverse[k] ? parts[k].reversed() : parts[k]
                guard let first = seq.first else { throw ctx.unsupported("a Scan of zero iterations") }
                guard let axis = Shapes.axis(outAxes[k], rank: first.rank + 1) else { throw ctx.invalid("scan output axis \(outAxes[k]) out of range") }
                return try stack(seq, axis: axis, ctx)
            }
            return (state, stacked)
        }
    }

    /// The stack of zero iterations of a scan output: shape [0] + its declared shape when known.
    static func emptyStack(_ info: ValueInfo) -> Tensor {
        let type = info.tensorType
        let dtype = ComputeType.internalType(type?.elementType ?? .float)
        var shape = [0]
        if let dims = type?.shape {
            for d in dims { if case .value(let v) = d { shape.append(v) } else { return Tensor(dtype: dtype, shape: [0]) } }
        }
        return Tensor(dtype: dtype, shape: shape)
    }

    static func elementSize(_ t: Tensor, _ ctx: KernelContext) throws -> Int {
        guard t.dtype.bitWidth >= 8, t.dtype != .string else { throw ctx.unsupported("scanning \(t.dtype.name) tensors") }
        return t.dtype.bitWidth / 8
    }

    /// `t` at `index` along `axis`, with that axis removed.
    static func slice(_ t: Tensor, axis: Int, index: Int, _ ctx: KernelContext) throws -> Tensor {
        let es = try elementSize(t, ctx)
        let outer = t.shape[..<axis].reduce(1, *), dim = t.shape[axis], inner = t.shape[(axis + 1)...].reduce(1, *) * es
        var shape = t.shape
        shape.remove(at: axis)
        let out = Tensor(dtype: t.dtype, shape: shape, storage: TensorStorage(uninitialized: outer * inner))
        for o in 0..<outer {
            (out.storage.pointer + o * inner).copyMemory(from: t.storage.pointer + (o * dim + index) * inner, byteCount: inner)
        }
        return out
    }

    /// Stacks equally shaped tensors along a new axis `axis`.
    static func stack(_ parts: [Tensor], axis: Int, _ ctx: KernelContext) throws -> Tensor {
        let first = parts[0]
        let es = try elementSize(first, ctx)
        for p in parts where p.shape != first.shape || p.dtype != first.dtype {
            throw ctx.invalid("iterations produced different shapes \(first.shape) and \(p.shape) for one scan output")
        }
        let outer = first.shape[..<axis].reduce(1, *), inner = first.shape[axis...].reduce(1, *) * es
        var shape = first.shape
        shape.insert(parts.count, at: axis)
        let out = Tensor(dtype: first.dtype, shape: shape, storage: TensorStorage(uninitialized: outer * inner * parts.count))
        for (k, p) in parts.enumerated() {
            for o in 0..<outer {
                (out.storage.pointer + (o * parts.count + k) * inner).copyMemory(from: p.storage.pointer + o * inner, byteCount: inner)
            }
        }
        return out
    }

    /// Zero-pads axis 0 of `t` to `length`.
    static func padAxis0(_ t: Tensor, to length: Int, _ ctx: KernelContext) throws -> Tensor {
        guard t.rank > 0, t.shape[0] < length else { return t }
        var shape = t.shape
        shape[0] = length
        let out = Tensor(dtype: t.dtype, shape: shape)
        out.storage.pointer.copyMemory(from: t.storage.pointer, byteCount: t.byteCount)
        return out
    }
}
