/// A small reader for Windows bitmaps (BITMAPINFOHEADER and its V4/V5 extensions):
/// uncompressed 24-bit and 32-bit (BI_RGB, or BI_BITFIELDS with the standard BGRA masks; the
/// fourth byte is ignored) and 1/4/8-bit palette images, bottom-up (positive height) or
/// top-down (negative height). Rows are padded to 4 bytes. Output is RGB on the 0–255 scale.
enum BMPDecoder {
    /// `check` sees the header's width and height before anything is allocated.
    static func decode(_ b: UnsafeRawBufferPointer, check: (Int, Int) throws -> Void = { _, _ in }) throws -> DecodedImage {
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func i32(_ o: Int) -> Int { Int(Int32(bitPattern: UInt32(u32(o)))) }
        guard b.count >= 54 else { throw BMPProblem("BMP header is cut short") }
        let dataOffset = u32(10)
        let dib = u32(14)
        guard dib >= 40 else { throw BMPProblem("OS/2 BMP headers (\(dib) bytes) are not supported", unsupported: true) }
        let width = i32(18), rawHeight = i32(22)
        let bpp = u16(28), compression = u32(30)
        guard width > 0, rawHeight != 0, width < 1 << 16, abs(rawHeight) < 1 << 16 else { throw BMPProblem("BMP size \(width)x\(rawHeight) is invalid") }
        let height = abs(rawHeight)
        try check(width, height)
        let topDown = rawHeight < 0
        guard compression == 0 || (compression == 3 && bpp == 32) else {
            throw BMPProblem("compressed BMPs (compression \(compression)) are not supported", unsupported: true)
        }
        guard [1, 4, 8, 24, 32].contains(bpp) else { throw BMPProblem("\(bpp)-bit BMPs are not supported", unsupported: true) }
        var palette: [(Float, Float, Float)] = []
        if bpp <= 8 {
            let used = u32(46)
            let n = used == 0 ? 1 << bpp : min(used, 1 << bpp)
            let start = 14 + dib
            guard b.count >= start + 4 * n else { throw BMPProblem("BMP palette is cut short") }
            palette = (0..<n).map { i in (Float(b[start + 4 * i + 2]), Float(b[start + 4 * i + 1]), Float(b[start + 4 * i])) }
        }
        let stride = (bpp * width + 31) / 32 * 4
        guard dataOffset >= 0, b.count >= dataOffset + stride * height else { throw BMPProblem("BMP pixel data is cut short") }
        var out = [Float](repeating: 0, count: width * height * 3)
        out.withUnsafeMutableBufferPointer { o in
            for y in 0..<height {
                let row = dataOffset + (topDown ? y : height - 1 - y) * stride
                for x in 0..<width {
                    let k = (y * width + x) * 3
                    switch bpp {
                    case 24, 32:
                        let p = row + x * (bpp / 8)
                        o[k] = Float(b[p + 2]); o[k + 1] = Float(b[p + 1]); o[k + 2] = Float(b[p])
                    default:
                        let bit = x * bpp
                        let byte = b[row + bit / 8]
                        let index = Int(byte >> UInt8(8 - bpp - bit % 8)) & ((1 << bpp) - 1)
                        let c = index < palette.count ? palette[index] : (0, 0, 0)
                        o[k] = c.0; o[k + 1] = c.1; o[k + 2] = c.2
                    }
                }
            }
        }
        return DecodedImage(width: width, height: height, channels: 3, pixels: out)
    }
}

struct BMPProblem: Error, CustomStringConvertible {
    let description: String
    let unsupported: Bool
    init(_ d: String, unsupported: Bool = false) {
        description = d
        self.unsupported = unsupported
    }
}
