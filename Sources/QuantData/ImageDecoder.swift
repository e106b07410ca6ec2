import CPNG
import CTurboJPEG
import Foundation
import QuantCore

/// A decoded image: `height × width × channels` samples, interleaved (HWC), on the 0–255
/// scale as Float (8-bit files exactly; 16-bit PNG samples are scaled by 255/65535).
/// `channels` is 1 (gray) or 3 (RGB); alpha is dropped, palettes are expanded.
public struct DecodedImage: Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [Float]

    public init(width: Int, height: Int, channels: Int, pixels: [Float]) {
        precondition(pixels.count == width * height * channels)
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

/// Decodes JPEG (libjpeg-turbo TurboJPEG API, accurate integer DCT and fancy upsampling, as
/// libjpeg's defaults), PNG (libpng simplified API) and BMP (`BMPDecoder`). Errors are QK2107
/// (unsupported) and QK2108 (unreadable or corrupt), naming `input` and the file.
public enum ImageDecoder {
    /// Pixels an image may have by default (`DataLimits.maxImagePixels`).
    public static let defaultMaxPixels = DataLimits().maxImagePixels

    /// Decodes the image at `path`. Its header's width × height is checked against
    /// `maxPixels` before any pixel is decoded (QK2115): an 86 KB JPEG may declare 65500×65500.
    public static func decode(path: String, input: String, maxPixels: Int = defaultMaxPixels) throws -> DecodedImage {
        let image = try decodeAny(path: path, input: input, maxPixels: maxPixels)
        guard image.width > 0, image.height > 0 else {
            throw DataError.unreadable(input: input, file: path, reason: "the image is \(image.width)x\(image.height) pixels")
        }
        return image
    }

    static func checkPixels(_ w: Int, _ h: Int, maxPixels: Int, path: String, input: String) throws {
        let (n, o) = w.multipliedReportingOverflow(by: h)
        if o || n > maxPixels {
            throw DataError.overBudget(input: input, file: path, "the image header declares \(w)x\(h) pixels, above the limit of \(maxPixels)",
                                       option: "--max-image-pixels, or `limits.maxImagePixels` in the data configuration")
        }
    }

    static func decodeAny(path: String, input: String, maxPixels: Int) throws -> DecodedImage {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let e as QuantKitError {
            throw DataError.unreadable(input: input, file: path, reason: e.message)
        }
        let b = file.bytes
        func starts(_ m: [UInt8]) -> Bool { b.count >= m.count && zip(b, m).allSatisfy { $0 == $1 } }
        if starts([0xFF, 0xD8, 0xFF]) { return try withExtendedLifetime(file) { try jpeg(b, path: path, input: input, maxPixels: maxPixels) } }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return try png(path: path, input: input, maxPixels: maxPixels) }
        if starts([0x42, 0x4D]) {
            do { return try withExtendedLifetime(file) {
                try BMPDecoder.decode(b) { w, h in try checkPixels(w, h, maxPixels: maxPixels, path: path, input: input) }
            } } catch let p as BMPProblem {
                if p.unsupported { throw DataError.unsupportedFile(input: input, file: path, detail: p.description) }
                throw DataError.unreadable(input: input, file: path, reason: p.description)
            }
        }
        if b.count == 0 { throw DataError.unreadable(input: input, file: path, reason: "the file is empty") }
        throw DataError.unreadable(input: input, file: path, reason: "not a JPEG, PNG or BMP image (unknown signature)")
    }

    static func jpeg(_ b: UnsafeRawBufferPointer, path: String, input: String, maxPixels: Int) throws -> DecodedImage {
        guard let h = tjInitDecompress() else { throw DataError.unreadable(input: input, file: path, reason: "cannot start libjpeg-turbo") }
        defer { tjDestroy(h) }
        let src = b.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var w: Int32 = 0, ht: Int32 = 0, sub: Int32 = 0, cs: Int32 = 0
        guard tjDecompressHeader3(h, src, UInt(b.count), &w, &ht, &sub, &cs) == 0 else {
            throw DataError.unreadable(input: input, file: path, reason: "corrupt JPEG header (\(String(cString: tjGetErrorStr2(h))))")
        }
        if cs == Int32(TJCS_CMYK.rawValue) || cs == Int32(TJCS_YCCK.rawValue) {
            throw DataError.unsupportedFile(input: input, file: path, detail: "CMYK JPEGs are not supported; convert the image to RGB")
        }
        guard w > 0, ht > 0 else { throw DataError.unreadable(input: input, file: path, reason: "corrupt JPEG header (size \(w)x\(ht))") }
        let gray = cs == Int32(TJCS_GRAY.rawValue)
        let channels = gray ? 1 : 3
        let width = Int(w), height = Int(ht)
        try checkPixels(width, height, maxPixels: maxPixels, path: path, input: input)
        var buf = [UInt8](repeating: 0, count: width * height * channels)
        let fmt = gray ? TJPF_GRAY : TJPF_RGB
        let rc = buf.withUnsafeMutableBufferPointer {
            tjDecompress2(h, src, UInt(b.count), $0.baseAddress, w, 0, ht, Int32(fmt.rawValue), 0)
        }
        // Warnings are tolerated (extraneous bytes before a marker, as other decoders do), but
        // not a file cut short: libjpeg-turbo fills the missing rows with gray.
        if rc != 0 {
            let message = String(cString: tjGetErrorStr2(h))
            if tjGetErrorCode(h) == Int32(TJERR_FATAL.rawValue) || message.contains("Premature end") {
                throw DataError.unreadable(input: input, file: path, reason: "corrupt JPEG data (\(message))")
            }
        }
        return DecodedImage(width: width, height: height, channels: channels, pixels: buf.map(Float.init))
    }

    static func png(path: String, input: String, maxPixels: Int) throws -> DecodedImage {
        var img = png_image()
        img.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&img) }
        func message() -> String {
            withUnsafeBytes(of: img.message) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        guard png_image_begin_read_from_file(&img, path) != 0 else {
            throw DataError.unreadable(input: input, file: path, reason: "corrupt PNG (\(message()))")
        }
        let color = img.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
        let alpha = img.format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
        let sixteen = img.format & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0
        // 16-bit files without alpha are read as they are (libpng assumes linear data and does
        // not convert). With alpha, libpng would premultiply linear output, so they are read as
        // 8-bit with the samples taken as sRGB (a plain 65535 -> 255 rescale, no gamma change).
        let wide = sixteen && !alpha
        if sixteen && alpha { img.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB) }
        img.format = (color ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0) | (alpha ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
            | (wide ? UInt32(PNG_FORMAT_FLAG_LINEAR) : 0)
        let stored = (color ? 3 : 1) + (alpha ? 1 : 0)
        let width = Int(img.width), height = Int(img.height)
        try checkPixels(width, height, maxPixels: maxPixels, path: path, input: input)
        let samples = width * height * stored
        let channels = color ? 3 : 1
        var out = [Float](repeating: 0, count: width * height * channels)
        func copy<T: BinaryInteger>(_ buf: [T], scale: Float) {
            out.withUnsafeMutableBufferPointer { o in
                var k = 0
                for p in 0..<(width * height) {
                    let base = p * stored
                    for c in 0..<channels { o[k] = Float(buf[base + c]) * scale; k += 1 }
                }
            }
        }
        if wide {
            var buf = [UInt16](repeating: 0, count: samples)
            let ok = buf.withUnsafeMutableBytes { png_image_finish_read(&img, nil, $0.baseAddress, 0, nil) }
            guard ok != 0 else { throw DataError.unreadable(input: input, file: path, reason: "corrupt PNG data (\(message()))") }
            copy(buf, scale: 255.0 / 65535.0)
        } else {
            var buf = [UInt8](repeating: 0, count: samples)
            let ok = buf.withUnsafeMutableBytes { png_image_finish_read(&img, nil, $0.baseAddress, 0, nil) }
            guard ok != 0 else { throw DataError.unreadable(input: input, file: path, reason: "corrupt PNG data (\(message()))") }
            copy(buf, scale: 1)
        }
        return DecodedImage(width: width, height: height, channels: channels, pixels: out)
    }
}
