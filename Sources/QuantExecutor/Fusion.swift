import CKernels
import QuantCore
import QuantIR

/// Node fusion for runs without hooks: a second step list for a `GraphPlan` in which
///
/// - `Pad(constant 0, spatial axes only) → Conv` becomes one Conv with the padding added to its
///   own (the padded tensor is never built);
/// - a Conv followed by scalar Mul/Add/Sub/Div nodes around at most one Relu, Clip,
///   HardSigmoid or HardSwish (also HardSwish written out as Add 3, Clip 0..6, Mul, Div 6)
///   applies them all in its output pass (`ConvEpilogue`);
/// - a pointwise Conv (with its epilogue) whose output only a depthwise Conv reads runs with it
///   in row bands (`pointwiseDepthwise`), so that the pointwise output never exists in full;
/// - a region of float element-wise nodes (Add/Sub/Mul/Div whose other operand is in the
///   region or a scalar constant, Relu/Clip/HardSigmoid/HardSwish) fed by one tensor becomes
///   one kernel that streams cache-sized blocks through the region's operations: one read and
///   one write of memory instead of one per node.
///
/// Fused values are never materialized, so the executor uses this list only when no hook is
/// attached (hooks must see, and may replace, every tensor). Every fused kernel keeps the
/// original kernels and runs them one after another when its fast path does not apply at run
/// time (a non-float input, padding that is not a spatial zero pad), so results never depend
/// on fusion beyond float rounding.
enum Fusion {
    typealias Step = GraphPlan.Step

    struct Context {
        let constants: [Int: Tensor]
        /// Values that must be materialized: graph outputs and values read by subgraphs.
        let kept: Set<Int>
        let opset: (Node) -> Int
    }

    static func fuse(_ steps: [Step], _ c: Context) -> [Step] {
        var steps = steps
        steps = padConv(steps, c)
        steps = convActivation(steps, c)
        steps = pointwiseDepthwise(steps, c)
        steps = elementwiseRegions(steps, c)
        return steps
    }

    /// Consumer step indices of every value.
    static func consumers(_ steps: [Step]) -> [Int: [Int]] {
        var r: [Int: [Int]] = [:]
        for (i, s) in steps.enumerated() { for v in s.inputs where v >= 0 { r[v, default: []].append(i) } }
        return r
    }

    /// The single step consuming `v` (once), when `v` is not kept.
    static func soleConsumer(_ v: Int, _ uses: [Int: [Int]], _ c: Context) -> Int? {
        guard !c.kept.contains(v), let u = uses[v], u.count == 1 else { return nil }
        return u[0]
    }

    static func isStandard(_ s: Step, _ op: String) -> Bool { s.node.opType == op && s.node.isStandard }

    /// A scalar float constant operand.
    static func scalar(_ id: Int, _ c: Context) -> Float? {
        guard id >= 0, let t = c.constants[id], t.dtype == .float, t.count == 1 else { return nil }
        return t.storage.pointer.load(as: Float.self)
    }

    /// The activation a Relu/Clip/HardSigmoid/HardSwish step computes, when its parameters are
    /// known at plan time.
    static func activation(_ s: Step, _ c: Context) -> PointwiseActivation? {
        guard s.node.isStandard, s.outputs.count == 1 else { return nil }
        switch s.node.opType {
        case "Relu": return .relu
        case "HardSwish": return .hardSwish
        case "HardSigmoid":
            return .hardSigmoid(alpha: s.node.attribute("alpha")?.float ?? 0.2, beta: s.node.attribute("beta")?.float ?? 0.5)
        case "Clip":
            if c.opset(s.node) < 11 {
                return .clip(s.node.attribute("min")?.float ?? -.greatestFiniteMagnitude, s.node.attribute("max")?.float ?? .greatestFiniteMagnitude)
            }
            var bounds: [Float] = [-.infinity, .infinity]
            for k in 1..<3 where k < s.inputs.count && s.inputs[k] >= 0 {
                guard let v = scalar(s.inputs[k], c) else { return nil }
                bounds[k - 1] = v
            }
            return .clip(bounds[0], bounds[1])
        default: return nil
        }
    }

    /// Replaces steps `parts` (ascending) by `fused` at the position of the last one.
    static func replace(_ steps: [Step], _ parts: [Int], with fused: Step) -> [Step] {
        var out: [Step] = []
        let drop = Set(parts)
        for (i, s) in steps.enumerated() {
            if i == parts.last! { out.append(fused) } else if !drop.contains(i) { out.append(s) }
        }
        return out
    }

    /// A step that runs `parts` (in order) through `fast`, or one by one when `fast` declines.
    /// Its inputs are the values the parts read from outside, in order of first use, except
    /// that `first` (when given) comes first.
    static func fusedStep(_ parts: [Step], output: Int, label: String, first: Int? = nil, convolution: ConvKernel? = nil,
                          fast: @escaping FusedKernel.FastPath) -> Step {
        let inputs = externalInputs(parts, first: first)
        let kernel = FusedKernel(parts: parts, inputIDs: inputs, outputID: output, convolution: convolution, fast: fast)
        return Step(node: parts.last!.node, kernel: kernel, inputs: inputs, outputs: [output], label: label)
    }

    /// The values `parts` read from outside, in order of first use (`first`, when given, first).
    static func externalInputs(_ parts: [Step], first: Int? = nil) -> [Int] {
        let produced = Set(parts.flatMap(\.outputs))
        var inputs: [Int] = first.map { [$0] } ?? []
        for p in parts { for v in p.inputs where v >= 0 && !produced.contains(v) && !inputs.contains(v) { inputs.append(v) } }
        return inputs
    }

    // MARK: Pad → Conv

    static func padConv(_ steps: [Step], _ c: Context) -> [Step] {
        var steps = steps
        var i = 0
        var cached: [Int: [Int]]? = nil  // consumers, recomputed only after a fusion
        while i < steps.count {
            let pad = steps[i]
            guard isStandard(pad, "Pad") else { i += 1; continue }
            let uses = cached ?? consumers(steps)
            cached = uses
            guard c.opset(pad.node) >= 11, (pad.node.attribute("mode")?.string ?? "constant") == "constant",
                  pad.outputs.count == 1, pad.inputs.count >= 2, pad.inputs.count < 4 || pad.inputs[3] < 0,
                  let j = soleConsumer(pad.outputs[0], uses, c), isStandard(steps[j], "Conv"), steps[j].inputs.first == pad.outputs[0],
                  let conv = steps[j].kernel as? ConvKernel, conv.window.autoPad == .notSet || conv.window.autoPad == .valid
            else { i += 1; continue }
            let convInputs = steps[j].inputs.dropFirst().filter { $0 >= 0 }.count
            let fused = fusedStep([pad, steps[j]], output: steps[j].outputs[0], label: "Pad+Conv", convolution: conv,
                                  fast: padConvFast(conv, padInputs: pad.inputs.count, convInputs: convInputs))
            // The fast path reads Pad's (x, pads[, value]) then the Conv's (W[, B]) by position.
            guard fused.inputs.count == pad.inputs.count + convInputs, !pad.inputs.contains(-1) else { i += 1; continue }
            steps = replace(steps, [i, j], with: fused)
            cached = nil
        }
        return steps
    }

    /// Pad+Conv from the fused inputs (Pad's x, pads[, value], then the Conv's W[, B]): one
    /// Conv with the pads added to its own, when they are non-negative zero pads of the
    /// spatial axes only.
    static func padConvFast(_ conv: ConvKernel, padInputs: Int, convInputs: Int) -> FusedKernel.FastPath {
        { inputs, env in
            guard let x = inputs[0], x.dtype == .float, x.rank >= 3,
                  let spatial = spatialZeroPads(inputs[1], value: padInputs > 2 ? inputs[2] : nil, rank: x.rank) else { return nil }
            return try conv.run([x] + Array(inputs[padInputs..<(padInputs + convInputs)]), env, extraPads: spatial)[0]
        }
    }

    /// A constant Pad's `pads` as the spatial pads a Conv can add to its own
    /// (`[x1_begin, ..., x1_end, ...]`), or nil unless they are non-negative, leave the batch and
    /// channel axes alone, and pad with zero (`value` absent or 0).
    static func spatialZeroPads(_ pads: Tensor?, value: Tensor?, rank r: Int) -> [Int]? {
        guard let pads, pads.dtype.isInteger else { return nil }
        let p = pads.intValues()
        guard p.count == 2 * r, p.allSatisfy({ $0 >= 0 }), p[0] == 0, p[1] == 0, p[r] == 0, p[r + 1] == 0 else { return nil }
        if let v = value, !(v.count == 1 && v.dtype == .float && v.storage.pointer.load(as: Float.self) == 0) { return nil }
        return Array(p[2..<r]) + Array(p[(r + 2)...])
    }

    // MARK: Conv → epilogue

    /// `v op k` for a scalar constant k as `v · scale + shift`, or nil.
    static func affine(_ t: Step, reading v: Int, _ c: Context) -> (scale: Float, shift: Float)? {
        guard t.node.isStandard, t.inputs.count == 2, t.outputs.count == 1, c.opset(t.node) >= 7 else { return nil }
        let (l, r) = (t.inputs[0], t.inputs[1])
        let k: Float, vFirst: Bool
        if l == v, r != v, let x = scalar(r, c) { k = x; vFirst = true } else if r == v, l != v, let x = scalar(l, c) { k = x; vFirst = false } else { return nil }
        switch t.node.opType {
        case "Add": return (1, k)
        case "Mul": return (k, 0)
        case "Sub": return vFirst ? (1, -k) : (-1, k)
        case "Div": return vFirst && k != 0 ? (1 / k, 0) : nil
        default: return nil
        }
    }

    /// `x · Clip(x + 3, 0, 6) / 6` written out as Add, Clip, Mul, Div (or Mul by 1/6): the
    /// steps (in order) and the result, when `x` is read by exactly the Add and the Mul.
    static func decomposedHardSwish(_ x: Int, _ steps: [Step], _ uses: [Int: [Int]], _ c: Context) -> ([Int], Int)? {
        guard !c.kept.contains(x), let u = uses[x], u.count == 2 else { return nil }
        let (a, m) = isStandard(steps[u[0]], "Add") ? (u[0], u[1]) : (u[1], u[0])
        guard let add = affine(steps[a], reading: x, c), add == (1, 3),
              let cl = soleConsumer(steps[a].outputs[0], uses, c), steps[cl].inputs.first == steps[a].outputs[0],
              activation(steps[cl], c) == .clip(0, 6), soleConsumer(steps[cl].outputs[0], uses, c) == m,
              isStandard(steps[m], "Mul"), Set(steps[m].inputs) == [x, steps[cl].outputs[0]], steps[m].outputs.count == 1,
              let d = soleConsumer(steps[m].outputs[0], uses, c), let six = affine(steps[d], reading: steps[m].outputs[0], c),
              six.shift == 0, abs(six.scale - 1 / 6) < 1e-7
        else { return nil }
        return ([a, cl, m, d].sorted(), steps[d].outputs[0])
    }

    static func convActivation(_ steps: [Step], _ c: Context) -> [Step] {
        var steps = steps
        var i = 0
        var cached: [Int: [Int]]? = nil  // consumers, recomputed only after a fusion
        while i < steps.count {
            let s = steps[i]
            guard s.node.opType == "Conv", s.outputs.count == 1 else { i += 1; continue }
            // The Conv kernel, and for Pad+Conv the Pad step in front of it.
            let conv: ConvKernel, pad: Step?, convStep: Step
            if let k = s.kernel as? ConvKernel {
                (conv, pad, convStep) = (k, nil, s)
            } else if let f = s.kernel as? FusedKernel, f.parts.count == 2, let k = f.parts[1].kernel as? ConvKernel {
                (conv, pad, convStep) = (k, f.parts[0], f.parts[1])
            } else {
                i += 1
                continue
            }
            guard conv.epilogue == .identity else { i += 1; continue }
            let uses = cached ?? consumers(steps)
            cached = uses
            var e = ConvEpilogue.identity
            var absorbed: [Int] = []
            var value = s.outputs[0]
            while true {
                if e.activation.kind == .none, let (parts, out) = decomposedHardSwish(value, steps, uses, c) {
                    e.activation = .hardSwish
                    absorbed += parts
                    value = out
                    continue
                }
                guard let j = soleConsumer(value, uses, c) else { break }
                if e.activation.kind == .none, steps[j].inputs.first == value, let act = activation(steps[j], c) {
                    e.activation = act
                } else if let (k, t) = affine(steps[j], reading: value, c) {
                    e = e.then(scale: k, shift: t)
                } else {
                    break
                }
                absorbed.append(j)
                value = steps[j].outputs[0]
            }
            guard !absorbed.isEmpty else { i += 1; continue }
            let label = (pad == nil ? "Conv" : "Pad+Conv") + "+epilogue"
            let parts = (pad.map { [$0] } ?? []) + [convStep] + absorbed.map { steps[$0] }
            let fused: Step
            if let pad {
                let convInputs = convStep.inputs.dropFirst().filter { $0 >= 0 }.count
                fused = fusedStep(parts, output: value, label: label, convolution: conv.with(e),
                                  fast: padConvFast(conv.with(e), padInputs: pad.inputs.count, convInputs: convInputs))
            } else {
                let activated = conv.with(e)
                let convInputs = s.inputs.filter { $0 >= 0 }.count
                fused = fusedStep(parts, output: value, label: label, convolution: activated) { inputs, env in
                    try activated.run(Array(inputs.prefix(convInputs)), env)[0]
                }
            }
            guard Array(fused.inputs.prefix(s.inputs.count)) == s.inputs else { i += 1; continue }
            steps = replace(steps, [i] + absorbed.sorted(), with: fused)
            cached = nil
        }
        return steps
    }

    // MARK: Element-wise regions

    static let binaryOps: [String: qk_binary_op] = ["Add": QK_ADD, "Sub": QK_SUB, "Mul": QK_MUL, "Div": QK_DIV]

    static func isRegionOp(_ s: Step, _ c: Context) -> Bool {
        guard s.node.isStandard, s.outputs.count == 1, s.outputs[0] >= 0 else { return false }
        if let _ = binaryOps[s.node.opType] { return c.opset(s.node) >= 7 && s.inputs.count == 2 }
        return activation(s, c) != nil
    }

    static func elementwiseRegions(_ steps: [Step], _ c: Context) -> [Step] {
        var steps = steps
        var i = 0
        var cached: [Int: [Int]]? = nil  // consumers, recomputed only after a fusion
        while i < steps.count {
            guard isRegionOp(steps[i], c) else { i += 1; continue }
            let uses = cached ?? consumers(steps)
            cached = uses
            guard let region = growRegion(from: i, steps, uses, c) else { i += 1; continue }
            let parts = region.nodes.map { steps[$0] }
            let program = region.program
            let fused = fusedStep(parts, output: region.output, label: "Elementwise×\(parts.count)", first: region.input) { inputs, env in
                program.run(inputs, env)
            }
            steps = replace(steps, region.nodes, with: fused)
            cached = nil
            i = region.nodes[0] + 1
        }
        return steps
    }

    struct Region {
        var input: Int
        var nodes: [Int]
        var output: Int
        var program: ElementwiseProgram
    }

    /// The largest region starting at step `start` whose values other than its output are
    /// read only inside it, or nil when it would have fewer than two nodes.
    static func growRegion(from start: Int, _ steps: [Step], _ uses: [Int: [Int]], _ c: Context) -> Region? {
        // The region's input: the first non-constant operand of the first node.
        let s0 = steps[start]
        let external = s0.inputs.filter { $0 >= 0 && scalar($0, c) == nil }
        guard let x = external.first, Set(external).count == 1 else { return nil }
        var nodes = [start]
        var inside: Set<Int> = [x, s0.outputs[0]]
        var best: [Int]? = nil
        func open() -> [Int] {
            nodes.map { steps[$0].outputs[0] }.filter { v in c.kept.contains(v) || (uses[v] ?? []).contains { !nodes.contains($0) } }
        }
        while true {
            let o = open()
            if o.count == 1, o[0] == steps[nodes.max()!].outputs[0], nodes.count >= 2 { best = nodes.sorted() }
            // The earliest consumer of an open value that can join.
            let candidates = Set(o.flatMap { uses[$0] ?? [] }).filter { !nodes.contains($0) }.sorted()
            guard let next = candidates.first(where: { j in
                isRegionOp(steps[j], c) && steps[j].inputs.contains { inside.contains($0) }
                    && steps[j].inputs.allSatisfy { $0 < 0 || inside.contains($0) || scalar($0, c) != nil }
            }) else { break }
            nodes.append(next)
            inside.insert(steps[next].outputs[0])
            if nodes.count > 32 { break }
        }
        guard let chosen = best else { return nil }
        let output = steps[chosen.last!].outputs[0]
        guard let program = ElementwiseProgram(chosen.map { steps[$0] }, input: x, c) else { return nil }
        return Region(input: x, nodes: chosen, output: output, program: program)
    }
}

/// A kernel standing for several steps: `fast` computes the last step's output from the
/// fused step's inputs, or returns nil, in which case the original kernels run in order.
final class FusedKernel: Kernel {
    typealias FastPath = ([Tensor?], RunEnvironment) throws -> Tensor?
    let parts: [GraphPlan.Step]
    let inputIDs: [Int]
    let outputID: Int
    /// For a fused Conv (Pad+Conv, Conv+epilogue): the Conv with its epilogue, which the fast
    /// path runs.
    let convolution: ConvKernel?
    let fast: FastPath

    init(parts: [GraphPlan.Step], inputIDs: [Int], outputID: Int, convolution: ConvKernel? = nil, fast: @escaping FastPath) {
        self.parts = parts
        self.inputIDs = inputIDs
        self.outputID = outputID
        self.convolution = convolution
        self.fast = fast
    }

    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] {
        if let y = try fast(inputs, env) { return [y] }
        var values: [Int: Tensor] = [:]
        for (k, id) in inputIDs.enumerated() { values[id] = inputs[k] }
        for p in parts {
            let outs: [Tensor?]
            do {
                outs = try p.kernel.run(p.inputs.map { $0 < 0 ? nil : values[$0] }, env)
            } catch let e as CodedError {
                throw e
            } catch {
                throw ExecutorError.invalid(p.node, "\(error)")
            }
            for (k, id) in p.outputs.enumerated() where id >= 0 && k < outs.count { values[id] = outs[k] }
        }
        return [values[outputID]]
    }
}

/// The operations of an element-wise region as a straight-line program over registers, run on
/// blocks of `block` floats so that intermediates stay in cache.
struct ElementwiseProgram {
    enum Operand { case input, register(Int), scalar(Float) }
    enum Instruction {
        case binary(qk_binary_op, Operand, Operand)
        case activation(PointwiseActivation, Operand)
    }
    /// Instruction k writes register k; the last one is the result.
    let instructions: [Instruction]
    /// Rank of the scalar constants' shapes (the output is the input broadcast to at least it).
    let constantRank: Int
    static let block = 1024

    init?(_ steps: [GraphPlan.Step], input: Int, _ c: Fusion.Context) {
        var register: [Int: Int] = [:]
        var instructions: [Instruction] = []
        var rank = 0
        func operand(_ v: Int) -> Operand? {
            if v == input { return .input }
            if let r = register[v] { return .register(r) }
            if let f = Fusion.scalar(v, c) {
                rank = max(rank, c.constants[v]!.rank)
                return .scalar(f)
            }
            return nil
        }
        for s in steps {
            if let op = Fusion.binaryOps[s.node.opType] {
                guard let a = operand(s.inputs[0]), let b = operand(s.inputs[1]) else { return nil }
                instructions.append(.binary(op, a, b))
            } else if let act = Fusion.activation(s, c), let a = operand(s.inputs[0]) {
                if case .scalar = a { return nil }
                instructions.append(.activation(act, a))
            } else {
                return nil
            }
            register[s.outputs[0]] = instructions.count - 1
        }
        self.instructions = instructions
        constantRank = rank
    }

    /// The region's output for a float input `inputs[0]`, or nil for other types.
    func run(_ inputs: [Tensor?], _ env: RunEnvironment) -> Tensor? {
        guard let x = inputs[0], x.dtype == .float else { return nil }
        let shape = x.rank >= constantRank ? x.shape : [Int](repeating: 1, count: constantRank - x.rank) + x.shape
        let count = x.count
        let xp = UnsafePointer(x.storage.pointer.assumingMemoryBound(to: Float.self))
        let b = ElementwiseProgram.block
        let regs = instructions.count
        return Tensor.makeFloat(shape) { out in
            guard let yp = out.baseAddress else { return }
            let blocks = (count + b - 1) / b
            parallelFor(blocks, threads: env.threads, grain: 16) { range in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: regs * b + 2 * regs)
                defer { scratch.deallocate() }
                // Scalars live after the registers so they can be passed as stride-0 rows.
                let scalars = scratch + regs * b
                for blk in range {
                    let lo = blk * b, n = min(b, count - lo)
                    func row(_ o: Operand, _ slot: Int) -> (UnsafePointer<Float>, Int) {
                        switch o {
                        case .input: return (xp + lo, 1)
                        case .register(let r): return (UnsafePointer(scratch + r * b), 1)
                        case .scalar(let v):
                            scalars[slot] = v
                            return (UnsafePointer(scalars + slot), 0)
                        }
                    }
                    for (k, ins) in instructions.enumerated() {
                        let dst = k == regs - 1 ? yp + lo : scratch + k * b
                        switch ins {
                        case .binary(let op, let l, let r):
                            let (pl, sl) = row(l, 2 * k)
                            let (pr, sr) = row(r, 2 * k + 1)
                            qk_binary(Int32(op.rawValue), pl, sl, pr, sr, dst, n)
                        case .activation(let act, let src):
                            let (p, _) = row(src, 2 * k)
                            qk_activation(p, dst, n, act.kind.rawValue, act.a, act.b)
                        }
                    }
                }
            }
        }
    }
}
