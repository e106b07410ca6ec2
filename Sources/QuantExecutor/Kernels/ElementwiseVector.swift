import CKernels
import QuantCore

/// A piecewise-linear activation that vectorized kernels apply in place of a separate pass:
/// the standalone Relu/Clip/HardSigmoid/HardSwish kernels, and Conv with a fused activation.
/// Formulas follow the ONNX operator definitions; NaN propagates (as numpy.clip does).
struct PointwiseActivation: Equatable {
    enum Kind: Int32 { case none = 0, relu = 1, clip = 2, hardSwish = 3, hardSigmoid = 4 }
    let kind: Kind
    /// `clip`: lower bound; `hardSwish`/`hardSigmoid`: alpha.
    var a: Float = 0
    /// `clip`: upper bound; `hardSwish`/`hardSigmoid`: beta.
    var b: Float = 0

    static let none = PointwiseActivation(kind: .none)
    static let relu = PointwiseActivation(kind: .relu)
    static func clip(_ lo: Float, _ hi: Float) -> PointwiseActivation { PointwiseActivation(kind: .clip, a: lo, b: hi) }
    static func hardSigmoid(alpha: Float, beta: Float) -> PointwiseActivation { PointwiseActivation(kind: .hardSigmoid, a: alpha, b: beta) }
    /// ONNX HardSwish: `x · HardSigmoid(x)` with alpha 1/6, beta 0.5.
    static let hardSwish = PointwiseActivation(kind: .hardSwish, a: 1.0 / 6, b: 0.5)

    /// `act(x)` as a new float32 tensor.
    func apply(_ x: Tensor, threads: Int) -> Tensor {
        Tensor.makeFloat(x.shape) { out in
            guard let y = out.baseAddress else { return }
            let xp = UnsafePointer(x.storage.pointer.assumingMemoryBound(to: Float.self))
            parallelFor(out.count, threads: threads, grain: 1 << 15) { r in
                qk_activation(xp + r.lowerBound, y + r.lowerBound, r.count, kind.rawValue, a, b)
            }
        }
    }

}

/// What a Conv applies to each output before storing it:
/// `postScale · act(preScale · v + preShift) + postShift`, with v the convolution plus bias.
/// Built by `Fusion` from scalar Mul/Add/Sub/Div nodes and one activation that follow a Conv.
struct ConvEpilogue: Equatable {
    var activation = PointwiseActivation.none
    var preScale: Float = 1, preShift: Float = 0
    var postScale: Float = 1, postShift: Float = 0

    static let identity = ConvEpilogue()

    var c: qk_epilogue {
        qk_epilogue(act: activation.kind.rawValue, a: activation.a, b: activation.b, pre_scale: preScale, pre_shift: preShift,
                    post_scale: postScale, post_shift: postShift)
    }

    /// The epilogue followed by `v · s + t` (on the activated value, or before the activation
    /// when there is none yet).
    func then(scale s: Float, shift t: Float) -> ConvEpilogue {
        var e = self
        if activation.kind == .none {
            e.preScale *= s
            e.preShift = e.preShift * s + t
        } else {
            e.postScale *= s
            e.postShift = e.postShift * s + t
        }
        return e
    }
}

extension Broadcast {
    /// `a op b` for float32 add/sub/mul/div with broadcasting, each inner row through the
    /// vectorized C kernel; nil when the shapes do not broadcast.
    static func floatArithmetic(_ op: qk_binary_op, _ a: Tensor, _ b: Tensor, threads: Int) -> Tensor? {
        guard let layout = BroadcastLayout([a.shape, b.shape]) else { return nil }
        let y = Tensor(dtype: .float, shape: layout.shape, storage: TensorStorage(uninitialized: layout.count * 4))
        let pa = UnsafePointer(a.storage.pointer.assumingMemoryBound(to: Float.self))
        let pb = UnsafePointer(b.storage.pointer.assumingMemoryBound(to: Float.self))
        let po = y.storage.pointer.assumingMemoryBound(to: Float.self)
        let sa = layout.steps[0], sb = layout.steps[1], code = Int32(op.rawValue)
        layout.forEachRow(threads: threads) { off, o, n in
            qk_binary(code, pa + off[0], sa, pb + off[1], sb, po + o, n)
        }
        return y
    }
}
