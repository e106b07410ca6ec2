import QuantCore

/// Depthwise 2-D convolution (group = C = M): a direct loop, one (image, channel) plane per
/// task.
///
/// Each plane is first copied into a zero-padded buffer split into `stride_w` column phases
/// (phase p holds padded columns p, p + s, p + 2s, ...), so that for every kernel tap the
/// output row reads a contiguous run of one phase: the inner loop is a plain SIMD
/// multiply-add over output columns with no bounds checks, for any stride and dilation.
enum ConvolutionDepthwise {
    static func run2D(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                      planes: Int, channels c: Int, _ g: WindowGeometry, threads: Int) {
        let ih = g.input[0], iw = g.input[1], oh = g.output[0], ow = g.output[1]
        let kh = g.kernel[0], kw = g.kernel[1]
        let sh = g.strides[0], sw = g.strides[1], dh = g.dilations[0], dw = g.dilations[1]
        let pt = g.padBegin[0], pl = g.padBegin[1]
        // Padded rows and per-phase columns the outputs read.
        let rows = (oh - 1) * sh + (kh - 1) * dh + 1
        // Output rows are computed in whole 8-wide vectors; the buffer is wide enough for the
        // last (partial) vector to read zeros.
        let vectors = (ow + 7) / 8
        let phaseWidth = vectors * 8 + ((kw - 1) * dw) / sw + 1
        let bufCount = sw * rows * phaseWidth
        // Offset of each tap (ki, kj) from the start of output row 0 in the buffer.
        var tapOffsets = [Int](repeating: 0, count: kh * kw)
        for ki in 0..<kh {
            for kj in 0..<kw {
                let off = kj * dw
                tapOffsets[ki * kw + kj] = ((off % sw) * rows + ki * dh) * phaseWidth + off / sw
            }
        }
        let nTaps = kh * kw
        parallelFor(planes, threads: threads, grain: max(1, 32768 / max(oh * ow * kh * kw, 1))) { range in
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: bufCount)
            defer { buf.deallocate() }
            var taps = [Float](repeating: 0, count: kh * kw)
            for plane in range {
                let ch = plane % c
                let xp = x + plane * ih * iw
                // Padded, phase-split copy of the plane.
                for r in 0..<rows {
                    let srcRow = r - pt
                    for p in 0..<sw {
                        let dst = buf + (p * rows + r) * phaseWidth
                        if srcRow < 0 || srcRow >= ih {
                            dst.update(repeating: 0, count: phaseWidth)
                            continue
                        }
                        // Columns j with 0 <= j·s + p − pl < iw.
                        let first = p - pl
                        let lo = min(phaseWidth, first >= 0 ? 0 : (-first + sw - 1) / sw)
                        let hi = max(lo, min(phaseWidth, iw - first <= 0 ? 0 : (iw - first - 1) / sw + 1))
                        if lo > 0 { dst.update(repeating: 0, count: lo) }
                        if hi < phaseWidth { (dst + hi).update(repeating: 0, count: phaseWidth - hi) }
                        let src = xp + srcRow * iw + first
                        if sw == 1 {
                            (dst + lo).update(from: src + lo, count: hi - lo)
                        } else {
                            for j in lo..<hi { dst[j] = src[j &* sw] }
                        }
                    }
                }
                for t in 0..<(kh * kw) { taps[t] = w[ch * kh * kw + t] }
                let b0 = bias?[ch] ?? 0
                let yp = y + plane * oh * ow
                // Output vectors (row, 8 columns) in groups of four independent accumulators.
                let items = oh * vectors
                taps.withUnsafeBufferPointer { tw in
                    tapOffsets.withUnsafeBufferPointer { to in
                        var i = 0
                        while i < items {
                            var src = (buf, buf, buf, buf)
                            var dst = (0, 0, 0, 0)
                            let count = min(4, items - i)
                            withUnsafeMutableBytes(of: &src) { sp in
                                withUnsafeMutableBytes(of: &dst) { dp in
                                    for k in 0..<4 {
                                        let item = i + min(k, count - 1)
                                        let r = item / vectors, o = (item % vectors) &* 8
                                        sp.storeBytes(of: buf + (r &* sh &* phaseWidth &+ o), toByteOffset: k * 8, as: UnsafeMutablePointer<Float>.self)
                                        dp.storeBytes(of: r &* ow &+ o, toByteOffset: k * 8, as: Int.self)
                                    }
                                }
                            }
                            let bias = SIMD8<Float>(repeating: b0)
                            var a0 = bias, a1 = bias, a2 = bias, a3 = bias
                            for t in 0..<nTaps {
                                let wv = SIMD8<Float>(repeating: tw[t])
                                let off = to[t]
                                a0 += wv * UnsafeRawPointer(src.0 + off).loadUnaligned(as: SIMD8<Float>.self)
                                a1 += wv * UnsafeRawPointer(src.1 + off).loadUnaligned(as: SIMD8<Float>.self)
                                a2 += wv * UnsafeRawPointer(src.2 + off).loadUnaligned(as: SIMD8<Float>.self)
                                a3 += wv * UnsafeRawPointer(src.3 + off).loadUnaligned(as: SIMD8<Float>.self)
                            }
                            store(a0, yp, dst.0, ow)
                            if count > 1 { store(a1, yp, dst.1, ow) }
                            if count > 2 { store(a2, yp, dst.2, ow) }
                            if count > 3 { store(a3, yp, dst.3, ow) }
                            i += count
                        }
                    }
                }
            }
        }
    }

    /// Stores the outputs of one vector at `at`, clipped to the row of width `ow`.
    @inline(__always)
    static func store(_ v: SIMD8<Float>, _ y: UnsafeMutablePointer<Float>, _ at: Int, _ ow: Int) {
        let n = min(8, ow - at % ow)
        if n == 8 {
            UnsafeMutableRawPointer(y + at).storeBytes(of: v, as: SIMD8<Float>.self)
        } else {
            for j in 0..<n { y[at + j] = v[j] }
        }
    }
}
