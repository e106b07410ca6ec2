import Foundation
import QuantCore
import QuantIR

/// DFT (opsets 17 and 20) and STFT (17): discrete Fourier transforms on tensors whose last axis
/// holds a real value [1] or a complex one [2] (real, imaginary). Computed directly in double,
/// O(n²) per transformed line with one table of twiddle factors.
enum SpectralKernels {
    static let all: [String: KernelFactory] = ["DFT": dft, "STFT": stft]

    /// The complex DFT of `re`/`im` (length n) in the forward (e^{-2πikt/n}) or inverse (e^{+…},
    /// scaled by 1/n) direction; `bins` outputs.
    static func transform(_ re: [Double], _ im: [Double], bins: Int, inverse: Bool, cosT: [Double], sinT: [Double]) -> ([Double], [Double]) {
        let n = re.count
        var outRe = [Double](repeating: 0, count: bins), outIm = [Double](repeating: 0, count: bins)
        let sign = inverse ? 1.0 : -1.0
        for k in 0..<bins {
            var a = 0.0, b = 0.0
            for t in 0..<n where re[t] != 0 || im[t] != 0 {
                let j = (k * t) % n
                let c = cosT[j], s = sign * sinT[j]
                a += re[t] * c - im[t] * s
                b += re[t] * s + im[t] * c
            }
            outRe[k] = inverse ? a / Double(n) : a
            outIm[k] = inverse ? b / Double(n) : b
        }
        return (outRe, outIm)
    }

    static func twiddles(_ n: Int) -> ([Double], [Double]) {
        ((0..<n).map { cos(2 * Double.pi * Double($0) / Double(n)) }, (0..<n).map { sin(2 * Double.pi * Double($0) / Double(n)) })
    }

    static func output(_ values: [Double], shape: [Int], like x: Tensor, _ ctx: KernelContext) throws -> Tensor {
        if x.dtype == .double { return Tensor(shape: shape, values: values) }
        return try CastKernels.convert(Tensor(shape: shape, floats: values.map { Float($0) }), to: x.dtype, ctx)
    }

    /// `DFT(input, dft_length?, axis?)`: along `axis` (an attribute, default 1, before opset 20;
    /// an input, default −2, from 20), the signal cut or zero-padded to dft_length. Forward:
    /// complex output, only bins 0...n/2 with `onesided`. `inverse`: complex output scaled by 1/n;
    /// with `onesided` the input is the half spectrum of a real signal and the output is real
    /// (n defaults to 2·(m − 1)).
    static func dft(_ ctx: KernelContext) throws -> Kernel {
        let inverse = ctx.int("inverse", 0) != 0, onesided = ctx.int("onesided", 0) != 0
        let attrAxis = ctx.opset < 20 ? ctx.int("axis", 1) : nil
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.rank >= 2, [1, 2].contains(x.shape[x.rank - 1]), x.dtype.isFloatingPoint else {
                throw ctx.invalid("input must end in an axis of 1 (real) or 2 (complex) values")
            }
            let rawAxis = attrAxis ?? (inputs.count > 2 ? inputs[2].map { Int($0.scalarAsDouble(at: 0)) } : nil) ?? -2
            guard let axis = Shapes.axis(rawAxis, rank: x.rank), axis < x.rank - 1 else { throw ctx.invalid("axis \(rawAxis) does not fit \(x.shape)") }
            let m = x.shape[axis], complexIn = x.shape[x.rank - 1] == 2
            let given = inputs.count > 1 ? inputs[1].map { Int($0.scalarAsDouble(at: 0)) } : nil
            let n = given ?? (inverse && onesided ? 2 * (m - 1) : m)
            guard n > 0 else { throw ctx.invalid("dft_length \(n) must be positive") }
            let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)..<(x.rank - 1)].reduce(1, *)
            let c = x.shape[x.rank - 1], v = x.doubles()
            let realOut = inverse && onesided
            let bins = realOut ? n : (onesided ? n / 2 + 1 : n)
            let width = realOut ? 1 : 2
            var out = [Double](repeating: 0, count: outer * bins * inner * width)
            let (cosT, sinT) = twiddles(n)
            for o in 0..<outer {
                for i in 0..<inner {
                    var re = [Double](repeating: 0, count: n), im = [Double](repeating: 0, count: n)
                    if realOut {
                        // The half spectrum of a real signal: bins 0...n/2 given (cut or zero-padded),
                        // the rest their conjugates; DC and Nyquist have no imaginary part.
                        for k in 0...(n / 2) where k < m {
                            let p = ((o * m + k) * inner + i) * c
                            re[k] = v[p]
                            im[k] = complexIn && k != 0 && !(n % 2 == 0 && k == n / 2) ? v[p + 1] : 0
                        }
                        for k in (n / 2 + 1)..<max(n, n / 2 + 1) { re[k] = re[n - k]; im[k] = -im[n - k] }
                    } else {
                        for t in 0..<min(m, n) {
                            let p = ((o * m + t) * inner + i) * c
                            re[t] = v[p]
                            im[t] = complexIn ? v[p + 1] : 0
                        }
                    }
                    let (yr, yi) = transform(re, im, bins: bins, inverse: inverse, cosT: cosT, sinT: sinT)
                    for k in 0..<bins {
                        let q = ((o * bins + k) * inner + i) * width
                        out[q] = yr[k]
                        if width == 2 { out[q + 1] = yi[k] }
                    }
                }
            }
            var shape = x.shape
            shape[axis] = bins
            shape[x.rank - 1] = width
            return [try output(out, shape: shape, like: x, ctx)]
        }
    }

    /// `STFT(signal[B, L, 1|2], frame_step, window?, frame_length?)`: frames of frame_length
    /// (default: the window's length, else L) every frame_step samples,
    /// ⌊(L − frame_length)/frame_step⌋ + 1 of them, each multiplied by the window (default all
    /// ones) and transformed: [B, frames, bins, 2], bins frame_length/2 + 1 with `onesided`
    /// (the default).
    static func stft(_ ctx: KernelContext) throws -> Kernel {
        let onesided = ctx.int("onesided", 1) != 0
        return ClosureKernel { inputs, _ in
            guard let x = inputs[0], x.rank == 3, [1, 2].contains(x.shape[2]), x.dtype.isFloatingPoint,
                  let stepT = inputs.count > 1 ? inputs[1] : nil else { throw ctx.invalid("signal [B, L, 1 or 2] and frame_step are required") }
            let window = inputs.count > 2 ? inputs[2]?.doubles() : nil
            let length = x.shape[1], step = Int(stepT.scalarAsDouble(at: 0))
            let frameLength = (inputs.count > 3 ? inputs[3].map { Int($0.scalarAsDouble(at: 0)) } : nil) ?? window?.count ?? length
            guard step > 0, frameLength > 0, frameLength <= length, window.map({ $0.count == frameLength }) ?? true else {
                throw ctx.invalid("frame_step \(step), frame_length \(frameLength) or the window do not fit a signal of \(length)")
            }
            let w = window ?? [Double](repeating: 1, count: frameLength)
            let frames = (length - frameLength) / step + 1, bins = onesided ? frameLength / 2 + 1 : frameLength
            let c = x.shape[2], v = x.doubles(), batches = x.shape[0]
            let (cosT, sinT) = twiddles(frameLength)
            var out = [Double](repeating: 0, count: batches * frames * bins * 2)
            for b in 0..<batches {
                for f in 0..<frames {
                    var re = [Double](repeating: 0, count: frameLength), im = re
                    for t in 0..<frameLength {
                        let p = (b * length + f * step + t) * c
                        re[t] = v[p] * w[t]
                        im[t] = c == 2 ? v[p + 1] * w[t] : 0
                    }
                    let (yr, yi) = transform(re, im, bins: bins, inverse: false, cosT: cosT, sinT: sinT)
                    for k in 0..<bins {
                        let q = ((b * frames + f) * bins + k) * 2
                        out[q] = yr[k]
                        out[q + 1] = yi[k]
                    }
                }
            }
            return [try output(out, shape: [batches, frames, bins, 2], like: x, ctx)]
        }
    }
}
