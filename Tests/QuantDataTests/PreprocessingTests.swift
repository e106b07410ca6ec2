import QuantCore
import Testing
@testable import QuantData

private func rgb(_ h: Int, _ w: Int, _ p: (Float, Float, Float)) -> DecodedImage {
    DecodedImage(width: w, height: h, channels: 3, pixels: (0..<(h * w)).flatMap { _ in [p.0, p.1, p.2] })
}

@Test func imagenetPresetOnAKnownPixel() throws {
    // RGB (255, 128, 0) -> BGR, (x - mean) / 57 with mean [103.94, 116.78, 123.68].
    let target = ImagePipeline.Target(height: 1, width: 1, layout: .nchw)
    let t = try ImagePipeline.run(rgb(1, 1, (255, 128, 0)), prep: .IMAGENET, target: target, input: "data", file: "x")
    #expect(t.shape == [1, 3, 1, 1])
    let v = t.floats()
    #expect(abs(v[0] - Float((0 - 103.94) / 57)) < 1e-6)
    #expect(abs(v[1] - Float((128 - 116.78) / 57)) < 1e-6)
    #expect(abs(v[2] - Float((255 - 123.68) / 57)) < 1e-6)
}

@Test func ptImagenetPresetOnAUniformImage() throws {
    // Shorter side 300 -> 256 (width 400 -> 341), crop 224 at (16, 58); a uniform image stays uniform.
    let target = try ImagePipeline.target(for: InputSignature(name: "x", dtype: .float, shape: [nil, 3, 224, 224]), prep: .PT_IMAGENET)
    let t = try ImagePipeline.run(rgb(300, 400, (255, 128, 0)), prep: .PT_IMAGENET, target: target, input: "x", file: "f")
    #expect(t.shape == [1, 3, 224, 224])
    let v = t.floats()
    let plane = 224 * 224
    #expect(abs(v[0] - Float((1 - 0.485) / 0.229)) < 1e-5)
    #expect(abs(v[plane + 17] - Float((128.0 / 255 - 0.456) / 0.224)) < 1e-5)
    #expect(abs(v[2 * plane + 999] - Float((0 - 0.406) / 0.225)) < 1e-5)
}

@Test func tfLitePresetMapsPixelsToMinusOneToOne() throws {
    // (x - 127) / 128 on RGB: 255 -> 1.0, 128 -> 1/128, 0 -> -127/128; named lookup is case-insensitive.
    #expect(ImagePreprocessing.preset(named: "tf_lite") == .TF_LITE)
    let target = try ImagePipeline.target(for: InputSignature(name: "x", dtype: .float, shape: [nil, 3, 224, 224]), prep: .TF_LITE)
    let t = try ImagePipeline.run(rgb(300, 400, (255, 128, 0)), prep: .TF_LITE, target: target, input: "x", file: "f")
    #expect(t.shape == [1, 3, 224, 224])
    let v = t.floats()
    let plane = 224 * 224
    #expect(abs(v[5] - 1) < 1e-6)
    #expect(abs(v[plane + 17] - Float(1.0 / 128)) < 1e-6)
    #expect(abs(v[2 * plane + 999] - Float(-127.0 / 128)) < 1e-6)
}

@Test func resizeShorterSideThenCenterCropTakesTheMiddle() throws {
    // 4x8 image, value = 10y + x. Shorter side 4 -> 2 gives 2x4; the 2x2 crop starts at column 1.
    // Nearest taps 8 -> 4 read columns 0,2,4,6; crop keeps 2,4. Rows 4 -> 2 read 0,2.
    let px = (0..<4).flatMap { y in (0..<8).map { x in Float(10 * y + x) } }
    let img = DecodedImage(width: 8, height: 4, channels: 1, pixels: px)
    let prep = ImagePreprocessing(colorFormat: .gray, resize: .nearest, resizeShorterSide: 2, centerCrop: true)
    let t = try ImagePipeline.run(img, prep: prep, target: .init(height: 2, width: 2, layout: .nchw), input: "x", file: "f")
    #expect(t.floats() == [2, 4, 22, 24])
}

@Test func colorConversionAndLayouts() throws {
    let img = DecodedImage(width: 2, height: 1, channels: 3, pixels: [10, 20, 30, 40, 50, 60])
    #expect(ImagePipeline.convertColor(img, to: .bgr).pixels == [30, 20, 10, 60, 50, 40])
    let g = ImagePipeline.convertColor(img, to: .gray).pixels
    #expect(abs(g[0] - Float(0.299 * 10 + 0.587 * 20 + 0.114 * 30)) < 1e-4)
    let prep = ImagePreprocessing(colorFormat: .rgb)
    let nhwc = try ImagePipeline.run(img, prep: prep, target: .init(height: 1, width: 2, layout: .nhwc), input: "x", file: "f")
    #expect(nhwc.shape == [1, 1, 2, 3] && nhwc.floats() == [10, 20, 30, 40, 50, 60])
    let nchw = try ImagePipeline.run(img, prep: prep, target: .init(height: 1, width: 2, layout: .nchw), input: "x", file: "f")
    #expect(nchw.floats() == [10, 40, 20, 50, 30, 60])
}

@Test func targetGeometryFromInputShape() throws {
    let nhwc = try ImagePipeline.target(for: InputSignature(name: "x", dtype: .uint8, shape: [1, 32, 48, 3]), prep: ImagePreprocessing(colorFormat: .rgb))
    #expect(nhwc == .init(height: 32, width: 48, layout: .nhwc))
    let gray = try ImagePipeline.target(for: InputSignature(name: "x", dtype: .float, shape: [nil, 1, 28, 28]), prep: ImagePreprocessing(colorFormat: .gray))
    #expect(gray == .init(height: 28, width: 28, layout: .nchw))
}

@Test func uint8TargetsRoundHalfToEvenAndSaturate() {
    let t = Tensor(shape: [6], floats: [-3, 0.5, 1.5, 254.5, 300, .nan])
    #expect(TensorConversion.convert(t, to: .uint8).int64s() == [0, 0, 2, 254, 255, 0])
    #expect(TensorConversion.convert(t, to: .int8).int64s() == [-3, 0, 2, 127, 127, 0])
    #expect(TensorConversion.convert(Tensor(shape: [2], floats: [1, -2]), to: .float16).floats() == [1, -2])
}

@Test func bmpReaderHandlesBottomUpTopDownAndPalette() throws {
    func header(width: Int, height: Int, bpp: Int, paletteCount: Int, dataSize: Int) -> [UInt8] {
        let offset = 54 + 4 * paletteCount
        var h: [UInt8] = [0x42, 0x4D] + Fixtures.bytes([UInt32(offset + dataSize), 0, UInt32(offset)])
        h += Fixtures.bytes([UInt32(40), UInt32(bitPattern: Int32(width)), UInt32(bitPattern: Int32(height))])
        h += Fixtures.bytes([UInt16(1), UInt16(bpp)]) + Fixtures.bytes([UInt32(0), UInt32(dataSize), 2835, 2835, UInt32(paletteCount), 0])
        return h
    }
    // 2x2 24-bit bottom-up: rows are padded to 8 bytes; the first stored row is the bottom one.
    let bottom: [UInt8] = [0, 0, 255, 0, 255, 0, 0, 0] // red, green (BGR order)
    let top: [UInt8] = [255, 0, 0, 9, 9, 9, 0, 0]       // blue, gray 9
    let file = header(width: 2, height: 2, bpp: 24, paletteCount: 0, dataSize: 16) + bottom + top
    let img = try file.withUnsafeBytes { try BMPDecoder.decode($0) }
    #expect(img.pixels == [0, 0, 255, 9, 9, 9, 255, 0, 0, 0, 255, 0])
    // Same pixels top-down (negative height).
    let td = header(width: 2, height: -2, bpp: 24, paletteCount: 0, dataSize: 16) + top + bottom
    #expect(try td.withUnsafeBytes { try BMPDecoder.decode($0) }.pixels == img.pixels)
    // 8-bit palette, 3x1: indices 1, 0, 2 (row padded to 4 bytes).
    let pal: [UInt8] = [0, 0, 0, 0, 30, 20, 10, 0, 1, 2, 3, 0]
    let p8 = header(width: 3, height: 1, bpp: 8, paletteCount: 3, dataSize: 4) + pal + [1, 0, 2, 0]
    #expect(try p8.withUnsafeBytes { try BMPDecoder.decode($0) }.pixels == [10, 20, 30, 0, 0, 0, 3, 2, 1])
}
