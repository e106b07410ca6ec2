/// Separable image resampling on Float samples (no intermediate rounding).
///
/// With `s = inSize / outSize` and pixel centers at `i + 0.5`, output index `d` reads:
///
/// - **nearest** (OpenCV INTER_NEAREST): source `min(floor(d * s), inSize - 1)`.
/// - **bilinear** (OpenCV INTER_LINEAR, half-pixel centers, no antialiasing):
///   `x = (d + 0.5) * s - 0.5`; `x0 = floor(x)`, `f = x - x0`; if `x0 < 0` then `x0 = 0, f = 0`;
///   if `x0 >= inSize - 1` then `x0 = inSize - 1, f = 0`; value `(1 - f) * src[x0] + f * src[x0 + 1]`.
/// - **area** (OpenCV INTER_AREA when shrinking): the mean of the source over the box
///   `[d * s, (d + 1) * s)`, each source pixel `i` weighted by the length of
///   `[i, i + 1) ∩ [d * s, (d + 1) * s)` divided by `s`. For enlarging, OpenCV switches to a
///   bilinear variant; QuantKit keeps the same box definition ("pixel mixing") for every scale.
///
/// Two-dimensional resizes apply the 1-D weights along rows and columns (separable).
public enum Resize {
    /// Source taps `(index, weight)` for each output index; weights of one output sum to 1.
    public static func taps(inSize: Int, outSize: Int, method: ResizeMethod) -> [[(Int, Float)]] {
        precondition(inSize > 0 && outSize > 0)
        let s = Double(inSize) / Double(outSize)
        return (0..<outSize).map { d in
            switch method {
            case .nearest:
                return [(min(Int((Double(d) * s).rounded(.down)), inSize - 1), Float(1))]
            case .bilinear:
                let x = (Double(d) + 0.5) * s - 0.5
                var x0 = Int(x.rounded(.down))
                var f = x - Double(x0)
                if x0 < 0 { x0 = 0; f = 0 }
                if x0 >= inSize - 1 { x0 = inSize - 1; f = 0 }
                return f == 0 ? [(x0, Float(1))] : [(x0, Float(1 - f)), (x0 + 1, Float(f))]
            case .area:
                let lo = Double(d) * s, hi = Double(d + 1) * s
                var taps: [(Int, Float)] = []
                var i = Int(lo.rounded(.down))
                while Double(i) < hi && i < inSize {
                    let overlap = min(Double(i + 1), hi) - max(Double(i), lo)
                    if overlap > 1e-12 { taps.append((i, Float(overlap / s))) }
                    i += 1
                }
                return taps
            }
        }
    }

    /// Resizes HWC `src` (`h × w × c`) with the taps for `rows` and `cols`, which may be slices
    /// of a larger resize (a crop window). Returns `rows.count × cols.count × c` samples.
    static func apply(_ src: [Float], h: Int, w: Int, c: Int, rows: ArraySlice<[(Int, Float)]>, cols: ArraySlice<[(Int, Float)]>) -> [Float] {
        let oh = rows.count, ow = cols.count
        // Columns first: every source row that some output row needs.
        var needed = [Bool](repeating: false, count: h)
        for r in rows { for (i, _) in r { needed[i] = true } }
        var tmp = [Float](repeating: 0, count: h * ow * c)
        src.withUnsafeBufferPointer { s in
            tmp.withUnsafeMutableBufferPointer { t in
                for y in 0..<h where needed[y] {
                    let srow = y * w * c, trow = y * ow * c
                    for (ox, taps) in cols.enumerated() {
                        for ch in 0..<c {
                            var acc: Float = 0
                            for (i, wt) in taps { acc += wt * s[srow + i * c + ch] }
                            t[trow + ox * c + ch] = acc
                        }
                    }
                }
            }
        }
        var out = [Float](repeating: 0, count: oh * ow * c)
        tmp.withUnsafeBufferPointer { t in
            out.withUnsafeMutableBufferPointer { o in
                for (oy, taps) in rows.enumerated() {
                    let orow = oy * ow * c
                    for k in 0..<(ow * c) {
                        var acc: Float = 0
                        for (i, wt) in taps { acc += wt * t[i * ow * c + k] }
                        o[orow + k] = acc
                    }
                }
            }
        }
        return out
    }

    /// Resizes a decoded image to `height × width`.
    public static func resize(_ image: DecodedImage, height: Int, width: Int, method: ResizeMethod) -> DecodedImage {
        let rows = taps(inSize: image.height, outSize: height, method: method)
        let cols = taps(inSize: image.width, outSize: width, method: method)
        let px = apply(image.pixels, h: image.height, w: image.width, c: image.channels, rows: rows[...], cols: cols[...])
        return DecodedImage(width: width, height: height, channels: image.channels, pixels: px)
    }
}
