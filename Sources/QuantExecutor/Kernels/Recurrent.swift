import QuantCore
import QuantIR

/// Recurrent operators RNN, GRU and LSTM (opsets 7–22): forward, reverse and bidirectional,
/// `sequence_lens`, initial states, `clip`, custom activations and `layout` (14+).
///
/// Per direction, the input projection of all time steps is one GEMM
/// (`X[S·B, I] · Wᵀ[I, G·H]` plus biases); each step then adds `H_{t-1} · Rᵀ` (one GEMM over the
/// batch) and applies the cell. Batch entries past their sequence length keep their state and
/// leave zeros in `Y`.
enum RecurrentKernels {
    static let all: [String: KernelFactory] = [
        "RNN": { try RecurrentKernel(.rnn, $0) },
        "GRU": { try RecurrentKernel(.gru, $0) },
        "LSTM": { try RecurrentKernel(.lstm, $0) },
    ]
}

final class RecurrentKernel: Kernel {
    enum Cell {
        case rnn, gru, lstm
        /// Gates per hidden unit: RNN i; GRU z, r, h; LSTM i, o, f, c.
        var gates: Int { self == .rnn ? 1 : self == .gru ? 3 : 4 }
        var activationsPerDirection: Int { self == .rnn ? 1 : self == .gru ? 2 : 3 }
    }

    let cell: Cell
    let ctx: KernelContext
    let hiddenSize: Int?
    /// One entry per direction: true when it runs backward in time.
    let reverse: [Bool]
    /// Activations per direction (f; f, g; or f, g, h).
    let activations: [[RecurrentActivation]]
    let clip: Float?
    let layout: Int
    let inputForget: Bool
    let linearBeforeReset: Bool

    init(_ cell: Cell, _ ctx: KernelContext) throws {
        self.cell = cell
        self.ctx = ctx
        hiddenSize = ctx.int("hidden_size")
        switch ctx.string("direction", "forward") {
        case "forward": reverse = [false]
        case "reverse": reverse = [true]
        case "bidirectional": reverse = [false, true]
        case let d: throw ctx.invalid("unknown direction '\(d)'")
        }
        let perDir = cell.activationsPerDirection
        let defaults: [String] = cell == .rnn ? ["Tanh"] : cell == .gru ? ["Sigmoid", "Tanh"] : ["Sigmoid", "Tanh", "Tanh"]
        var names = ctx.strings("activations") ?? []
        if names.isEmpty { names = Array(repeating: defaults, count: reverse.count).flatMap { $0 } }
        if names.count == perDir && reverse.count == 2 { names += names }
        guard names.count == perDir * reverse.count else {
            throw ctx.invalid("activations needs \(perDir * reverse.count) entries, got \(names.count)")
        }
        let parsed = try RecurrentActivation.parse(names, alphas: ctx.floats("activation_alpha") ?? [], betas: ctx.floats("activation_beta") ?? [], ctx: ctx)
        activations = (0..<reverse.count).map { Array(parsed[($0 * perDir)..<(($0 + 1) * perDir)]) }
        clip = ctx.node.attribute("clip")?.float
        layout = ctx.int("layout", 0)
        inputForget = ctx.int("input_forget", 0) != 0
        linearBeforeReset = ctx.int("linear_before_reset", 0) != 0
        guard layout == 0 || layout == 1 else { throw ctx.invalid("layout must be 0 or 1") }
    }

    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] {
        func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
        guard let x = input(0), let w = input(1), let r = input(2), x.rank == 3, w.rank == 3, r.rank == 3 else {
            throw ctx.invalid("X, W and R must be 3-D")
        }
        let dirs = reverse.count, g = cell.gates
        let seq = layout == 0 ? x.shape[0] : x.shape[1], batch = layout == 0 ? x.shape[1] : x.shape[0], inSize = x.shape[2]
        let hidden = hiddenSize ?? w.shape[1] / g
        guard w.shape == [dirs, g * hidden, inSize], r.shape == [dirs, g * hidden, hidden] else {
            throw ctx.invalid("W \(w.shape) / R \(r.shape) do not fit \(dirs) direction(s), hidden size \(hidden), input size \(inSize)")
        }
        let stateShape = layout == 0 ? [dirs, batch, hidden] : [batch, dirs, hidden]
        let bias = input(3), lens = input(4)?.intValues(), h0 = input(5), c0 = cell == .lstm ? input(6) : nil
        let peep = cell == .lstm ? input(7) : nil
        if let bias, bias.shape != [dirs, 2 * g * hidden] { throw ctx.invalid("B must be [\(dirs), \(2 * g * hidden)], got \(bias.shape)") }
        if let lens, lens.count != batch || lens.contains(where: { $0 < 0 || $0 > seq }) {
            throw ctx.invalid("sequence_lens must have \(batch) entries in 0...\(seq)")
        }
        for s in [h0, c0].compactMap({ $0 }) where s.shape != stateShape { throw ctx.invalid("initial state \(s.shape) must be \(stateShape)") }
        if let peep, peep.shape != [dirs, 3 * hidden] { throw ctx.invalid("P must be [\(dirs), \(3 * hidden)], got \(peep.shape)") }

        let y = Tensor(dtype: .float, shape: layout == 0 ? [seq, dirs, batch, hidden] : [batch, seq, dirs, hidden])
        let yh = Tensor(dtype: .float, shape: stateShape)
        let yc = Tensor(dtype: .float, shape: stateShape)
        for t in [x, w, r] where t.dtype != .float { throw ctx.unsupported("element type \(t.dtype.name)") }
        // Read X, W and R in place (no copies per run); they are immutable float32 tensors.
        let xp = UnsafePointer(x.storage.pointer.assumingMemoryBound(to: Float.self))
        let wp = UnsafePointer(w.storage.pointer.assumingMemoryBound(to: Float.self))
        let rp = UnsafePointer(r.storage.pointer.assumingMemoryBound(to: Float.self))
        let bf = bias?.floats(), pf = peep?.floats(), h0f = h0?.floats(), c0f = c0?.floats()
        let gh = g * hidden
        // Offset of the state of (direction, batch) in Y_h-shaped tensors.
        func stateOffset(_ d: Int, _ b: Int) -> Int { layout == 0 ? (d * batch + b) * hidden : (b * dirs + d) * hidden }
        func row(_ t: Int, _ b: Int) -> Int { layout == 0 ? t * batch + b : b * seq + t }
        func yOffset(_ t: Int, _ d: Int, _ b: Int) -> Int { layout == 0 ? ((t * dirs + d) * batch + b) * hidden : ((b * seq + t) * dirs + d) * hidden }

        var proj = [Float](repeating: 0, count: seq * batch * gh)
        var rec = [Float](repeating: 0, count: batch * gh)
        var h = [Float](repeating: 0, count: batch * hidden), c = h
        var gates = [Float](repeating: 0, count: batch * gh), tmp = [Float](repeating: 0, count: batch * hidden)
        y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
            for d in 0..<dirs {
                let act = activations[d]
                // Input projection of every step: proj = X · W_dᵀ + Wb (+ Rb except GRU's Rbh
                // when it is applied after the reset gate).
                BLAS.sgemm(transB: true, m: seq * batch, n: gh, k: inSize, a: xp, lda: inSize,
                           b: wp + d * gh * inSize, ldb: inSize, c: &proj, ldc: gh)
                var rbh = [Float](repeating: 0, count: hidden)
                if let bf {
                    var add = [Float](repeating: 0, count: gh)
                    for j in 0..<gh { add[j] = bf[d * 2 * gh + j] + bf[d * 2 * gh + gh + j] }
                    if cell == .gru && linearBeforeReset {
                        for j in 0..<hidden {
                            rbh[j] = bf[d * 2 * gh + gh + 2 * hidden + j]
                            add[2 * hidden + j] -= rbh[j]
                        }
                    }
                    for i in 0..<(seq * batch) { for j in 0..<gh { proj[i * gh + j] += add[j] } }
                }
                for b in 0..<batch {
                    for j in 0..<hidden {
                        h[b * hidden + j] = h0f?[stateOffset(d, b) + j] ?? 0
                        c[b * hidden + j] = c0f?[stateOffset(d, b) + j] ?? 0
                    }
                }
                let steps = lens?.max() ?? seq
                for s in 0..<steps {
                    // rec = H · R_dᵀ (GRU without linear_before_reset: z and r columns only).
                    let recCols = cell == .gru && !linearBeforeReset ? 2 * hidden : gh
                    BLAS.sgemm(transB: true, m: batch, n: recCols, k: hidden, a: h, lda: hidden,
                               b: rp + d * gh * hidden, ldb: hidden, c: &rec, ldc: gh)
                    // GRU's candidate gate takes its recurrent term after the reset gate.
                    let recAdd = cell == .gru ? 2 * hidden : gh
                    let active = (0..<batch).filter { s < (lens?[$0] ?? seq) }
                    func time(_ b: Int) -> Int { reverse[d] ? (lens?[b] ?? seq) - 1 - s : s }
                    for b in active {
                        let pr = row(time(b), b) * gh
                        for j in 0..<gh { gates[b * gh + j] = proj[pr + j] + (j < recAdd ? rec[b * gh + j] : 0) }
                    }
                    switch cell {
                    case .rnn:
                        for b in active {
                            gates.withUnsafeMutableBufferPointer { gp in
                                let p = gp.baseAddress! + b * gh
                                clipValues(p, hidden)
                                act[0].apply(p, hidden)
                                for j in 0..<hidden { h[b * hidden + j] = p[j] }
                            }
                        }
                    case .lstm:
                        for b in active {
                            gates.withUnsafeMutableBufferPointer { gp in
                                let p = gp.baseAddress! + b * gh
                                let hb = b * hidden
                                let (gi, go, gf, gc) = (p, p + hidden, p + 2 * hidden, p + 3 * hidden)
                                if let pf {
                                    for j in 0..<hidden {
                                        gi[j] += pf[d * 3 * hidden + j] * c[hb + j]
                                        gf[j] += pf[d * 3 * hidden + 2 * hidden + j] * c[hb + j]
                                    }
                                }
                                clipValues(gi, hidden); clipValues(gf, hidden); clipValues(gc, hidden)
                                act[0].apply(gi, hidden)
                                if inputForget { for j in 0..<hidden { gf[j] = 1 - gi[j] } } else { act[0].apply(gf, hidden) }
                                act[1].apply(gc, hidden)
                                for j in 0..<hidden { c[hb + j] = gf[j] * c[hb + j] + gi[j] * gc[j] }
                                if let pf { for j in 0..<hidden { go[j] += pf[d * 3 * hidden + hidden + j] * c[hb + j] } }
                                clipValues(go, hidden)
                                act[0].apply(go, hidden)
                                for j in 0..<hidden { tmp[hb + j] = c[hb + j] }
                                tmp.withUnsafeMutableBufferPointer { act[2].apply($0.baseAddress! + hb, hidden) }
                                for j in 0..<hidden { h[hb + j] = go[j] * tmp[hb + j] }
                            }
                        }
                    case .gru:
                        gates.withUnsafeMutableBufferPointer { gp in
                            for b in active {
                                let p = gp.baseAddress! + b * gh
                                clipValues(p, 2 * hidden)
                                act[0].apply(p, 2 * hidden)
                            }
                            if linearBeforeReset {
                                for b in active {
                                    let p = gp.baseAddress! + b * gh
                                    for j in 0..<hidden { p[2 * hidden + j] += p[hidden + j] * (rec[b * gh + 2 * hidden + j] + rbh[j]) }
                                }
                            } else {
                                // (r ⊙ H) · Rhᵀ for the whole batch.
                                for b in 0..<batch { for j in 0..<hidden { tmp[b * hidden + j] = gp[b * gh + hidden + j] * h[b * hidden + j] } }
                                BLAS.sgemm(transB: true, m: batch, n: hidden, k: hidden, a: tmp, lda: hidden,
                                           b: rp + d * gh * hidden + 2 * hidden * hidden, ldb: hidden, c: &rec, ldc: gh)
                                for b in active {
                                    for j in 0..<hidden { gp[b * gh + 2 * hidden + j] += rec[b * gh + j] }
                                }
                            }
                            for b in active {
                                let p = gp.baseAddress! + b * gh
                                clipValues(p + 2 * hidden, hidden)
                                act[1].apply(p + 2 * hidden, hidden)
                                for j in 0..<hidden {
                                    let z = p[j]
                                    h[b * hidden + j] = (1 - z) * p[2 * hidden + j] + z * h[b * hidden + j]
                                }
                            }
                        }
                    }
                    for b in active {
                        let yo = yOffset(time(b), d, b)
                        for j in 0..<hidden { yp[yo + j] = h[b * hidden + j] }
                    }
                }
                yh.withUnsafeMutableBufferPointer(as: Float.self) { hp in
                    yc.withUnsafeMutableBufferPointer(as: Float.self) { cp in
                        for b in 0..<batch {
                            for j in 0..<hidden {
                                hp[stateOffset(d, b) + j] = h[b * hidden + j]
                                cp[stateOffset(d, b) + j] = c[b * hidden + j]
                            }
                        }
                    }
                }
            }
        }
        withExtendedLifetime((x, w, r)) {}
        let outs: [Tensor?] = [y, yh, cell == .lstm ? yc : nil]
        return Array(outs.prefix(max(ctx.node.outputs.count, 1)))
    }

    /// Clamps pre-activations to `[-clip, clip]` when the clip attribute is set.
    func clipValues(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        guard let clip else { return }
        for j in 0..<n { p[j] = max(-clip, min(clip, p[j])) }
    }
}
