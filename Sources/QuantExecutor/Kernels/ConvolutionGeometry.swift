import QuantCore
import QuantIR

/// Spatial attributes shared by Conv, ConvTranspose and the pooling operators
/// (`auto_pad`, `kernel_shape`, `strides`, `dilations`, `pads`), parsed once per node.
struct WindowAttributes {
    enum AutoPad: String { case notSet = "NOTSET", sameUpper = "SAME_UPPER", sameLower = "SAME_LOWER", valid = "VALID" }

    let autoPad: AutoPad
    let kernelShape: [Int]?
    let strides: [Int]?
    let dilations: [Int]?
    /// `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]` as in ONNX.
    let pads: [Int]?

    init(_ ctx: KernelContext) throws {
        let s = ctx.string("auto_pad", "NOTSET")
        guard let a = AutoPad(rawValue: s.isEmpty ? "NOTSET" : s) else { throw ctx.invalid("unknown auto_pad '\(s)'") }
        autoPad = a
        kernelShape = ctx.ints("kernel_shape")
        strides = ctx.ints("strides")
        dilations = ctx.ints("dilations")
        pads = ctx.ints("pads")
        for (name, v) in [("strides", strides), ("dilations", dilations), ("kernel_shape", kernelShape)] {
            if let v, v.contains(where: { $0 < 1 }) { throw ctx.invalid("\(name) \(v) must be positive") }
        }
        if let pads, pads.contains(where: { $0 < 0 }) { throw ctx.invalid("pads \(pads) must not be negative") }
    }

    /// Resolved geometry for an input of spatial shape `input` and (dilated-less) kernel `kernel`.
    /// `ceilMode` applies to pooling only; `extraPads` (`[begin..., end...]`) is added to the
    /// explicit padding (a fused zero Pad; never with SAME auto_pad).
    func resolve(input: [Int], kernel: [Int], ceilMode: Bool = false, extraPads: [Int]? = nil, ctx: KernelContext) throws -> WindowGeometry {
        let r = input.count
        let k = kernelShape ?? kernel
        let s = strides ?? [Int](repeating: 1, count: r)
        let d = dilations ?? [Int](repeating: 1, count: r)
        guard k.count == r, s.count == r, d.count == r else {
            throw ctx.invalid("kernel_shape \(k), strides \(s) or dilations \(d) do not match \(r) spatial dimensions")
        }
        var begin = [Int](repeating: 0, count: r), end = begin, out = begin
        for i in 0..<r {
            let ke = (k[i] - 1) * d[i] + 1
            switch autoPad {
            case .sameUpper, .sameLower:
                out[i] = (input[i] + s[i] - 1) / s[i]
                let total = max(0, (out[i] - 1) * s[i] + ke - input[i])
                begin[i] = autoPad == .sameUpper ? total / 2 : total - total / 2
                end[i] = total - begin[i]
            case .valid, .notSet:
                if autoPad == .notSet, let pads {
                    guard pads.count == 2 * r else { throw ctx.invalid("pads \(pads) must have \(2 * r) values") }
                    begin[i] = pads[i]
                    end[i] = pads[i + r]
                }
                if let extraPads, extraPads.count == 2 * r {
                    begin[i] += extraPads[i]
                    end[i] += extraPads[i + r]
                }
                let span = input[i] + begin[i] + end[i] - ke
                guard span >= 0 else {
                    throw ctx.invalid("kernel extent \(ke) exceeds padded input \(input[i] + begin[i] + end[i]) in dimension \(i)")
                }
                if ceilMode {
                    out[i] = (span + s[i] - 1) / s[i] + 1
                    // The last window must start inside the input or its leading padding.
                    if (out[i] - 1) * s[i] >= input[i] + begin[i] { out[i] -= 1 }
                } else {
                    out[i] = span / s[i] + 1
                }
            }
        }
        return WindowGeometry(input: input, kernel: k, strides: s, dilations: d, padBegin: begin, padEnd: end, output: out)
    }
}

/// A resolved sliding-window geometry over `input.count` spatial dimensions.
struct WindowGeometry {
    let input: [Int]
    let kernel: [Int]
    let strides: [Int]
    let dilations: [Int]
    let padBegin: [Int]
    let padEnd: [Int]
    let output: [Int]

    var rank: Int { input.count }
    var inputSize: Int { Tensor.elementCount(input) }
    var outputSize: Int { Tensor.elementCount(output) }
    var kernelSize: Int { Tensor.elementCount(kernel) }

    /// Output positions `o` along dimension `i` whose input index `o·s − pad + k·d` is inside
    /// the input, for kernel offset `k`.
    @inline(__always)
    func validRange(_ i: Int, kernelOffset k: Int) -> Range<Int> {
        let shift = k * dilations[i] - padBegin[i]
        // o*s + shift >= 0  and  o*s + shift <= input-1
        let lo = shift >= 0 ? 0 : (-shift + strides[i] - 1) / strides[i]
        let hiNum = input[i] - 1 - shift
        let hi = hiNum < 0 ? 0 : min(output[i], hiNum / strides[i] + 1)
        return lo < hi ? lo..<hi : 0..<0
    }
}
