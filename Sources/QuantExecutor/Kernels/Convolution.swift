import CKernels
import QuantCore
import QuantIR

/// Convolutions: Conv and ConvTranspose over 1-D, 2-D and 3-D (any rank) inputs, float32.
///
/// Conv lowers to GEMM per image and group: `Y_g[M/g, out] = W_g[M/g, C/g·K] · col[C/g·K, out]`
/// where `col` is the im2col matrix (the input itself for 1×1 stride-1 unpadded kernels), with
/// the weights packed once (`ConvPackedWeights`, CKernels `qk_gemm_packed`) and bias and epilogue
/// applied at the store. Depthwise 2-D convolutions (group = C = M) use a direct loop instead.
enum ConvolutionKernels {
    static let all: [String: KernelFactory] = [
        "Conv": { try ConvKernel($0) },
        "ConvTranspose": { try ConvTransposeKernel($0) },
    ]

    /// Fills `y[channel, ...]` (`channels` planes of `plane` floats) with the bias, or zeros.
    static func fillBias(_ y: UnsafeMutablePointer<Float>, channels: Range<Int>, plane: Int, bias: UnsafePointer<Float>?) {
        for c in channels { (y + c * plane).update(repeating: bias?[c] ?? 0, count: plane) }
    }

    /// im2col: row `c·K + k` of `col` holds, for each output position, the input element that
    /// kernel offset `k` of channel `c` reads (0 in the padding). `x` points at `channels`
    /// planes of the input.
    static func im2col(_ x: UnsafePointer<Float>, channels: Int, _ g: WindowGeometry, _ col: UnsafeMutablePointer<Float>, threads: Int) {
        let r = g.rank
        let kSize = g.kernelSize
        let outSize = g.outputSize, inSize = g.inputSize
        let last = r - 1
        let outLast = g.output[last], inLast = g.input[last]
        let outer = outSize / max(outLast, 1)
        parallelFor(channels * kSize, threads: threads, grain: max(1, 32768 / max(outSize, 1))) { rows in
            var kk = [Int](repeating: 0, count: r)
            var oidx = [Int](repeating: 0, count: r)
            for row in rows {
                var rem = row % kSize
                for i in stride(from: r - 1, through: 0, by: -1) {
                    kk[i] = rem % g.kernel[i]
                    rem /= g.kernel[i]
                }
                let xc = x + (row / kSize) * inSize
                let dst = col + row * outSize
                let valid = g.validRange(last, kernelOffset: kk[last])
                let shift = kk[last] * g.dilations[last] - g.padBegin[last]
                let sL = g.strides[last]
                for i in 0..<r { oidx[i] = 0 }
                for o in 0..<outer {
                    let drow = dst + o * outLast
                    var inside = true
                    var base = 0
                    for i in 0..<last {
                        let ii = oidx[i] * g.strides[i] + kk[i] * g.dilations[i] - g.padBegin[i]
                        if ii < 0 || ii >= g.input[i] { inside = false; break }
                        base = base * g.input[i] + ii
                    }
                    if !inside || valid.isEmpty {
                        drow.update(repeating: 0, count: outLast)
                    } else {
                        if valid.lowerBound > 0 { drow.update(repeating: 0, count: valid.lowerBound) }
                        if valid.upperBound < outLast { (drow + valid.upperBound).update(repeating: 0, count: outLast - valid.upperBound) }
                        let src = xc + base * inLast + shift
                        if sL == 1 {
                            (drow + valid.lowerBound).update(from: src + valid.lowerBound, count: valid.count)
                        } else {
                            for ow in valid { drow[ow] = src[ow * sL] }
                        }
                    }
                    // Next outer output position.
                    var i = last - 1
                    while i >= 0 {
                        oidx[i] += 1
                        if oidx[i] < g.output[i] { break }
                        oidx[i] = 0
                        i -= 1
                    }
                }
            }
        }
    }
}

/// `Conv` (opsets 1, 11, 22): X [N, C, D...], W [M, C/group, k...], optional B [M].
/// `epilogue` is applied to every output element before it is stored when the executor has
/// fused following scalar arithmetic and an activation into this node (see `Fusion`).
final class ConvKernel: Kernel {
    let ctx: KernelContext
    let window: WindowAttributes
    let group: Int
    let epilogue: ConvEpilogue
    /// W packed from its initializer at compile time (nil for depthwise, non-constant W).
    let packed: ConvPackedWeights?

    init(_ ctx: KernelContext) throws {
        self.ctx = ctx
        window = try WindowAttributes(ctx)
        group = ctx.int("group", 1)
        epilogue = .identity
        guard group >= 1 else { throw ctx.invalid("group \(group) must be positive") }
        if let w = ctx.constantInput(1), !(w.rank == 4 && w.shape[1] == 1 && w.shape[0] == group) {
            packed = ConvPackedWeights(w, groups: group)
        } else {
            packed = nil
        }
    }

    private init(_ base: ConvKernel, epilogue: ConvEpilogue) {
        ctx = base.ctx
        window = base.window
        group = base.group
        packed = base.packed
        self.epilogue = epilogue
    }

    /// This convolution with `epilogue` instead of its own.
    func with(_ epilogue: ConvEpilogue) -> ConvKernel { ConvKernel(self, epilogue: epilogue) }

    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] {
        try run(inputs, env, extraPads: nil)
    }

    /// Runs with `extraPads` (`[x1_begin, ..., x1_end, ...]`, zeros) added to the node's own
    /// padding: a fused zero `Pad` in front of it. Only for auto_pad NOTSET or VALID.
    func run(_ inputs: [Tensor?], _ env: RunEnvironment, extraPads: [Int]?) throws -> [Tensor?] {
        let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
        let w = try MatrixKernels.floatInput(inputs.count > 1 ? inputs[1] : nil, ctx, "W")
        let b = inputs.count > 2 ? inputs[2] : nil
        guard x.rank >= 3, w.rank == x.rank else { throw ctx.invalid("X \(x.shape) and W \(w.shape) must have the same rank >= 3") }
        let n = x.shape[0], c = x.shape[1], m = w.shape[0]
        guard c % group == 0, m % group == 0, w.shape[1] * group == c else {
            throw ctx.invalid("X has \(c) channels but W \(w.shape) with group \(group) expects \(w.shape[1] * group)")
        }
        if let b, b.dtype != .float || b.count != m { throw ctx.invalid("B \(b.shape) must hold \(m) floats") }
        let g = try window.resolve(input: Array(x.shape.dropFirst(2)), kernel: Array(w.shape.dropFirst(2)), extraPads: extraPads, ctx: ctx)
        guard g.kernel == Array(w.shape.dropFirst(2)) else { throw ctx.invalid("kernel_shape \(g.kernel) disagrees with W \(w.shape)") }
        let cg = c / group, mg = m / group
        let outSize = g.outputSize, inSize = g.inputSize, kSize = g.kernelSize
        let y = Tensor.makeFloat([n, m] + g.output) { out in
            guard out.count > 0 else { return }
            let yp = out.baseAddress!
            let xp = x.storage.pointer.assumingMemoryBound(to: Float.self)
            let wp = w.storage.pointer.assumingMemoryBound(to: Float.self)
            let bp = b.map { UnsafePointer($0.storage.pointer.assumingMemoryBound(to: Float.self)) }
            if g.rank == 2 && group == c && m == c && cg == 1 {
                ConvolutionDepthwise.run2D(xp, wp, bp, yp, planes: n * c, channels: c, g, epilogue: epilogue, threads: env.threads)
                return
            }
            let pointwise = kSize == 1 && g.strides.allSatisfy { $0 == 1 } && g.padBegin.allSatisfy { $0 == 0 } && g.padEnd.allSatisfy { $0 == 0 }
            let colCount = pointwise ? 0 : cg * kSize * outSize
            let weights = packed.flatMap { $0.matches(w, groups: group) ? $0 : nil } ?? ConvPackedWeights(w, groups: group)!
            let e = epilogue.c
            let identity = epilogue == .identity
            // One image: per group, im2col (unless pointwise) and one packed GEMM that adds the
            // bias and applies the epilogue as it stores.
            func image(_ img: Int, _ col: UnsafeMutablePointer<Float>, threads: Int) {
                let yi = yp + img * m * outSize
                for grp in 0..<group {
                    let xg = UnsafePointer(xp + (img * c + grp * cg) * inSize)
                    let bMatrix: UnsafePointer<Float>
                    if pointwise {
                        bMatrix = xg
                    } else {
                        ConvolutionKernels.im2col(xg, channels: cg, g, col, threads: threads)
                        bMatrix = UnsafePointer(col)
                    }
                    withUnsafePointer(to: e) { ep in
                        weights.multiply(group: grp, b: bMatrix, n: outSize, c: yi + grp * mg * outSize, bias: bp.map { $0 + grp * mg },
                                         epilogue: identity ? nil : ep, threads: threads)
                    }
                }
            }
            // A batch of at least `threads` images is split by image: one synchronization per
            // Conv instead of three per image, and each thread's data stays in its cache.
            let byImage = env.threads > 1 && n >= env.threads
            parallelFor(byImage ? n : 1, threads: byImage ? env.threads : 1) { images in
                let col = UnsafeMutablePointer<Float>.allocate(capacity: max(colCount, 1))
                defer { col.deallocate() }
                if byImage {
                    for img in images { image(img, col, threads: 1) }
                } else {
                    for img in 0..<n { image(img, col, threads: env.threads) }
                }
            }
        }
        return [y]
    }
}

/// `ConvTranspose` (opsets 1, 11, 22): X [N, C, D...], W [C, M/group, k...], optional B [M].
/// Per image and group, `col[M/g·K, in] = W_gᵀ · X_g`, then col2im scatters the columns into
/// the output.
final class ConvTransposeKernel: Kernel {
    let ctx: KernelContext
    let window: WindowAttributes
    let group: Int
    let outputPadding: [Int]?
    let outputShape: [Int]?

    init(_ ctx: KernelContext) throws {
        self.ctx = ctx
        window = try WindowAttributes(ctx)
        group = ctx.int("group", 1)
        outputPadding = ctx.ints("output_padding")
        outputShape = ctx.ints("output_shape")
        guard group >= 1 else { throw ctx.invalid("group \(group) must be positive") }
    }

    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] {
        let x = try MatrixKernels.floatInput(inputs[0], ctx, "X")
        let w = try MatrixKernels.floatInput(inputs.count > 1 ? inputs[1] : nil, ctx, "W")
        let b = inputs.count > 2 ? inputs[2] : nil
        guard x.rank >= 3, w.rank == x.rank else { throw ctx.invalid("X \(x.shape) and W \(w.shape) must have the same rank >= 3") }
        let n = x.shape[0], c = x.shape[1]
        guard w.shape[0] == c, c % group == 0 else { throw ctx.invalid("W \(w.shape) must have X's \(c) input channels, divisible by group \(group)") }
        let mg = w.shape[1], m = mg * group, cg = c / group
        if let b, b.dtype != .float || b.count != m { throw ctx.invalid("B \(b.shape) must hold \(m) floats") }
        let r = x.rank - 2
        let input = Array(x.shape.dropFirst(2))
        let kernel = window.kernelShape ?? Array(w.shape.dropFirst(2))
        guard kernel == Array(w.shape.dropFirst(2)) else { throw ctx.invalid("kernel_shape \(kernel) disagrees with W \(w.shape)") }
        let s = window.strides ?? [Int](repeating: 1, count: r)
        let d = window.dilations ?? [Int](repeating: 1, count: r)
        let op = outputPadding ?? [Int](repeating: 0, count: r)
        guard s.count == r, d.count == r, op.count >= r else { throw ctx.invalid("strides, dilations or output_padding do not match \(r) spatial dimensions") }
        var begin = [Int](repeating: 0, count: r), end = begin, out = begin
        var full = [Int](repeating: 0, count: r)
        for i in 0..<r {
            let extent: Int = (kernel[i] - 1) * d[i] + 1
            full[i] = s[i] * (input[i] - 1) + op[i] + extent
        }
        let given: [Int]? = outputShape.map { Array($0.suffix(r)) }
        if window.pads == nil && (window.autoPad == .sameUpper || window.autoPad == .sameLower) {
            if let given { out = given } else { for i in 0..<r { out[i] = input[i] * s[i] } }
            for i in 0..<r {
                let total = full[i] - out[i]
                begin[i] = window.autoPad == .sameUpper ? total / 2 : total - total / 2
                end[i] = total - begin[i]
            }
        } else {
            if let pads = window.pads {
                guard pads.count == 2 * r else { throw ctx.invalid("pads \(pads) must have \(2 * r) values") }
                begin = Array(pads[..<r])
                end = Array(pads[r...])
            }
            if let given { out = given } else { for i in 0..<r { out[i] = full[i] - begin[i] - end[i] } }
        }
        guard out.count == r, out.allSatisfy({ $0 >= 0 }) else { throw ctx.invalid("output shape \(out) is invalid") }
        let g = WindowGeometry(input: out, kernel: kernel, strides: s, dilations: d, padBegin: begin, padEnd: end, output: input)
        let inSize = Tensor.elementCount(input), outSize = Tensor.elementCount(out), kSize = g.kernelSize
        let y = Tensor.makeFloat([n, m] + out) { yb in
            guard yb.count > 0 else { return }
            let yp = yb.baseAddress!
            let xp = x.storage.pointer.assumingMemoryBound(to: Float.self)
            let wp = w.storage.pointer.assumingMemoryBound(to: Float.self)
            let bp = b.map { UnsafePointer($0.storage.pointer.assumingMemoryBound(to: Float.self)) }
            let col = UnsafeMutablePointer<Float>.allocate(capacity: max(mg * kSize * inSize, 1))
            defer { col.deallocate() }
            for img in 0..<n {
                let yi = yp + img * m * outSize
                ConvolutionKernels.fillBias(yi, channels: 0..<m, plane: outSize, bias: bp)
                for grp in 0..<group {
                    if inSize > 0 && cg > 0 {
                        MatrixGEMM.sgemm(transA: true, m: mg * kSize, n: inSize, k: cg, a: wp + grp * cg * mg * kSize, lda: mg * kSize,
                                   b: xp + (img * c + grp * cg) * inSize, ldb: inSize, c: col, ldc: inSize, threads: env.threads)
                    } else {
                        col.update(repeating: 0, count: mg * kSize * inSize)
                    }
                    col2im(col, channels: mg, g, yi + grp * mg * outSize, threads: env.threads)
                }
            }
        }
        return [y]
    }

    /// Adds column row `c·K + k` (one value per input position) into output plane `c` at
    /// `i·stride − pad + k·dilation`. `g` is the geometry of the equivalent forward Conv
    /// (its `input` is this operator's output).
    func col2im(_ col: UnsafePointer<Float>, channels: Int, _ g: WindowGeometry, _ y: UnsafeMutablePointer<Float>, threads: Int) {
        let r = g.rank, kSize = g.kernelSize
        let inPositions = g.outputSize, outPlane = g.inputSize
        let last = r - 1
        let nLast = g.output[last]
        let outer = inPositions / max(nLast, 1)
        parallelFor(channels, threads: threads) { chans in
            var kk = [Int](repeating: 0, count: r)
            var idx = [Int](repeating: 0, count: r)
            for ch in chans {
                let yc = y + ch * outPlane
                for k in 0..<kSize {
                    var rem = k
                    for i in stride(from: r - 1, through: 0, by: -1) {
                        kk[i] = rem % g.kernel[i]
                        rem /= g.kernel[i]
                    }
                    let src = col + (ch * kSize + k) * inPositions
                    let valid = g.validRange(last, kernelOffset: kk[last])
                    let shift = kk[last] * g.dilations[last] - g.padBegin[last]
                    let sL = g.strides[last]
                    for i in 0..<r { idx[i] = 0 }
                    for o in 0..<outer {
                        var inside = true
                        var base = 0
                        for i in 0..<last {
                            let p = idx[i] * g.strides[i] + kk[i] * g.dilations[i] - g.padBegin[i]
                            if p < 0 || p >= g.input[i] { inside = false; break }
                            base = base * g.input[i] + p
                        }
                        if inside {
                            let dst = yc + base * g.input[last] + shift
                            let srow = src + o * nLast
                            for j in valid { dst[j * sL] += srow[j] }
                        }
                        var i = last - 1
                        while i >= 0 {
                            idx[i] += 1
                            if idx[i] < g.output[i] { break }
                            idx[i] = 0
                            i -= 1
                        }
                    }
                }
            }
        }
    }
}
