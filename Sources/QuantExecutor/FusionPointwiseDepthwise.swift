import CKernels
import QuantCore
import QuantIR

// Pointwise Conv → (Pad →) depthwise Conv, the expansion and depthwise steps of an inverted
// residual block (MobileNetV2, EfficientNet-Lite): run together in row bands of each image
// (CKernels `qk_pointwise_depthwise`), so that the expanded tensor — 4.8 MB at 112×112×96 in
// EfficientNet-Lite0 — is never written out and read back; each band of it lives in L2.
extension Fusion {
    /// A Conv step as fused so far: the Conv step itself, the Pad step in front of it (Pad+Conv)
    /// and the kernel with its epilogue. (A fused step carries the node of its last part, e.g.
    /// the Clip of Conv+epilogue, so the kernel tells what it is.)
    struct ConvParts {
        let conv: Step
        let pad: Step?
        let kernel: ConvKernel
    }

    static func convParts(_ s: Step) -> ConvParts? {
        guard s.outputs.count == 1 else { return nil }
        if let k = s.kernel as? ConvKernel { return ConvParts(conv: s, pad: nil, kernel: k) }
        guard let f = s.kernel as? FusedKernel, let k = f.convolution,
              let conv = f.parts.first(where: { $0.kernel is ConvKernel && $0.node.opType == "Conv" })
        else { return nil }
        return ConvParts(conv: conv, pad: f.parts.first.flatMap { isStandard($0, "Pad") ? $0 : nil }, kernel: k)
    }

    static func pointwiseDepthwise(_ steps: [Step], _ c: Context) -> [Step] {
        var steps = steps
        var i = 0
        var cached: [Int: [Int]]? = nil  // consumers, recomputed only after a fusion
        while i < steps.count {
            // The pointwise Conv: constant 1×1 weights packed at load, one group, no Pad.
            guard let a = convParts(steps[i]) else { i += 1; continue }
            let uses = cached ?? consumers(steps)
            cached = uses
            guard a.pad == nil, a.kernel.group == 1, a.kernel.packed != nil,
                  a.conv.inputs.count >= 2, let w1 = c.constants[a.conv.inputs[1]], w1.rank == 4, w1.shape[2] == 1, w1.shape[3] == 1,
                  let j = soleConsumer(steps[i].outputs[0], uses, c), let b = convParts(steps[j]),
                  (b.pad ?? b.conv).inputs.first == steps[i].outputs[0],
                  b.conv.inputs.count >= 2, let w2 = c.constants[b.conv.inputs[1]], w2.rank == 4, w2.shape[1] == 1,
                  w2.shape[0] == w1.shape[0], b.kernel.group == w2.shape[0]
            else { i += 1; continue }
            let parts = [steps[i], steps[j]]
            let inputs = externalInputs(parts)
            func index(_ id: Int?) -> Int? { id.flatMap { $0 >= 0 ? inputs.firstIndex(of: $0) : nil } }
            let optional = { (s: Step, k: Int) -> Int? in k < s.inputs.count ? s.inputs[k] : nil }
            guard let ix = index(a.conv.inputs[0]), let iw1 = index(a.conv.inputs[1]), let iw2 = index(b.conv.inputs[1]) else { i += 1; continue }
            let pads = b.pad.flatMap { index(optional($0, 1)) }
            guard b.pad == nil || pads != nil else { i += 1; continue }
            let layout = PointwiseDepthwiseInputs(
                x: ix, w1: iw1, b1: index(optional(a.conv, 2)), w2: iw2, b2: index(optional(b.conv, 2)),
                pads: pads, padValue: b.pad.flatMap { index(optional($0, 2)) })
            let fused = fusedStep(parts, output: steps[j].outputs[0], label: "Conv+DepthwiseConv",
                                  fast: pointwiseDepthwiseFast(a.kernel, b.kernel, layout))
            steps = replace(steps, [i, j], with: fused)
            cached = nil
        }
        return steps
    }

    /// Bytes of pointwise output (one image) above which the fast path runs.
    static let fuseAbove = 2 << 20

    /// Positions of the fused step's inputs (`pads` is present when a Pad precedes the
    /// depthwise Conv).
    struct PointwiseDepthwiseInputs {
        let x, w1: Int
        let b1: Int?
        let w2: Int
        let b2: Int?
        let pads, padValue: Int?
    }

    /// The fused step's fast path: nil (the two steps then run one after the other) unless the
    /// shapes at run time are a 1×1 stride-1 unpadded Conv and a depthwise Conv that
    /// `qk_pointwise_depthwise` handles.
    static func pointwiseDepthwiseFast(_ pw: ConvKernel, _ dw: ConvKernel, _ at: PointwiseDepthwiseInputs) -> FusedKernel.FastPath {
        { inputs, env in
            guard let x = inputs[at.x], x.dtype == .float, x.rank == 4, let w1 = inputs[at.w1], let packed = pw.packed,
                  packed.matches(w1, groups: 1), let w2 = inputs[at.w2], w2.dtype == .float, w2.rank == 4
            else { return nil }
            let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            let m = w1.shape[0]
            guard w1.shape == [m, cin, 1, 1], w2.shape[0] == m, w2.shape[1] == 1, dw.group == m, n > 0, m > 0 else { return nil }
            let b1 = at.b1.flatMap { inputs[$0] }, b2 = at.b2.flatMap { inputs[$0] }
            for b in [b1, b2] where b != nil { guard b!.dtype == .float, b!.count == m else { return nil } }
            let g1 = try pw.window.resolve(input: [h, wd], kernel: [1, 1], ctx: pw.ctx)
            guard g1.output == [h, wd], g1.strides == [1, 1], g1.padBegin == [0, 0], g1.padEnd == [0, 0] else { return nil }
            var extra: [Int]? = nil
            if let pi = at.pads {
                guard dw.window.autoPad == .notSet || dw.window.autoPad == .valid,
                      let spatial = spatialZeroPads(inputs[pi], value: at.padValue.flatMap { inputs[$0] }, rank: 4) else { return nil }
                extra = spatial
            }
            let g = try dw.window.resolve(input: [h, wd], kernel: [w2.shape[2], w2.shape[3]], extraPads: extra, ctx: dw.ctx)
            guard g.rank == 2, g.kernel == [w2.shape[2], w2.shape[3]] else { return nil }
            var geometry = qk_dw_geometry(
                ih: Int32(h), iw: Int32(wd), oh: Int32(g.output[0]), ow: Int32(g.output[1]),
                kh: Int32(g.kernel[0]), kw: Int32(g.kernel[1]), sh: Int32(g.strides[0]), sw: Int32(g.strides[1]),
                dh: Int32(g.dilations[0]), dw: Int32(g.dilations[1]), pad_top: Int32(g.padBegin[0]), pad_left: Int32(g.padBegin[1]),
                channels: Int32(m))
            // Only when the pointwise output would not fit in the L2 caches (2 MiB here): below
            // that, the two kernels one after the other measured as fast or faster (EfficientNet-
            // Lite0, 2 threads: 112×112×96 fused 0.45 ms against 0.62; 56×56×144 0.28 against 0.25).
            guard qk_pointwise_depthwise_applies(&geometry) != 0, m * h * wd * MemoryLayout<Float>.size > fuseAbove else { return nil }
            let (oh, ow) = (g.output[0], g.output[1])
            // Bands of 8 output rows; channels in chunks (multiples of 8, at least one per
            // thread) whose band slice of the pointwise output takes at most ~256 KiB.
            let band = min(oh, 8)
            let capRows = qk_pointwise_depthwise_rows(&geometry, band)
            let perChannel = capRows * wd * MemoryLayout<Float>.size
            let widest = max(8, (256 << 10) / max(perChannel, 1) / 8 * 8)
            var chunks = max(1, (m + widest - 1) / widest)
            chunks = (chunks + env.threads - 1) / env.threads * env.threads
            let chunk = min(m, max(8, ((m + chunks - 1) / chunks + 7) / 8 * 8))
            chunks = (m + chunk - 1) / chunk
            var e1 = pw.epilogue.c, e2 = dw.epilogue.c
            let y = Tensor.makeFloat([n, m, oh, ow]) { out in
                let yp = out.baseAddress!
                let xp = x.storage.pointer.assumingMemoryBound(to: Float.self)
                let w2p = w2.storage.pointer.assumingMemoryBound(to: Float.self)
                let b1p = b1.map { UnsafePointer($0.storage.pointer.assumingMemoryBound(to: Float.self)) }
                let b2p = b2.map { UnsafePointer($0.storage.pointer.assumingMemoryBound(to: Float.self)) }
                withUnsafePointer(to: &e1) { e1p in withUnsafePointer(to: &e2) { e2p in withUnsafePointer(to: &geometry) { gp in
                    let ep1 = pw.epilogue == .identity ? nil : e1p, ep2 = dw.epilogue == .identity ? nil : e2p
                    parallelFor(n * chunks, threads: env.threads) { tasks in
                        let buf = UnsafeMutablePointer<Float>.allocate(capacity: chunk * capRows * wd)
                        defer { buf.deallocate() }
                        for t in tasks {
                            let img = t / chunks, c0 = t % chunks * chunk, c1 = min(m, c0 + chunk)
                            qk_pointwise_depthwise(xp + img * cin * h * wd, cin, packed.data, b1p, ep1, w2p, b2p, ep2, gp,
                                                   yp + img * m * oh * ow, c0, c1, band, buf)
                        }
                    }
                } } }
            }
            return y
        }
    }
}
