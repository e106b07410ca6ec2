import CKernels
import QuantCore

/// Depthwise 2-D convolution (group = C = M): a direct vectorized loop in CKernels
/// (`qk_depthwise2d`), a chunk of (image, channel) planes per task, bias and the fused
/// epilogue applied before the store.
///
/// With AVX-512, runs of 16 channels are transposed into a padded channel-interleaved tile
/// and every kernel tap is one 16-channel multiply-add per output pixel; otherwise each plane
/// is copied into a zero-padded buffer split into `stride_w` column phases, so that for every
/// kernel tap an output row reads a contiguous run of one phase (8-wide multiply-adds). Both
/// handle any stride and dilation.
enum ConvolutionDepthwise {
    static func run2D(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                      planes: Int, channels c: Int, _ g: WindowGeometry, epilogue: ConvEpilogue, threads: Int) {
        var geometry = qk_dw_geometry(
            ih: Int32(g.input[0]), iw: Int32(g.input[1]), oh: Int32(g.output[0]), ow: Int32(g.output[1]),
            kh: Int32(g.kernel[0]), kw: Int32(g.kernel[1]), sh: Int32(g.strides[0]), sw: Int32(g.strides[1]),
            dh: Int32(g.dilations[0]), dw: Int32(g.dilations[1]), pad_top: Int32(g.padBegin[0]), pad_left: Int32(g.padBegin[1]),
            channels: Int32(c))
        let scratch = qk_depthwise2d_scratch(&geometry)
        let work = g.outputSize * g.kernelSize
        var e = epilogue.c
        // Chunks of whole units: the 16-channel AVX-512 variant works on runs of 16 planes,
        // the others on single planes (an even split: 144 planes are 72 + 72, not 80 + 64).
        let unit = qk_depthwise2d_planes_per_unit(&geometry)
        let units = (planes + unit - 1) / unit
        withUnsafePointer(to: &e) { ep in withUnsafePointer(to: &geometry) { gp in
            parallelFor(units, threads: threads, grain: max(1, 2048 / max(work * unit, 1))) { range in
                let buf = UnsafeMutablePointer<Float>.allocate(capacity: max(scratch, 1))
                defer { buf.deallocate() }
                qk_depthwise2d(x, w, bias, y, range.lowerBound * unit, min(planes, range.upperBound * unit), gp, ep, buf)
            }
        } }
    }
}
