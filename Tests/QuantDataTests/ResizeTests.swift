import QuantCore
import Testing
@testable import QuantData

private func image(_ h: Int, _ w: Int, _ values: [Float]) -> DecodedImage {
    DecodedImage(width: w, height: h, channels: 1, pixels: values)
}

@Test func bilinearUpscale2x2To4x4() {
    // Taps for 2 -> 4 (scale 0.5): x = (d + 0.5) * 0.5 - 0.5 = -0.25, 0.25, 0.75, 1.25
    // -> [a, 0.75a + 0.25b, 0.25a + 0.75b, b] (the ends clamp).
    let out = Resize.resize(image(2, 2, [0, 4, 8, 12]), height: 4, width: 4, method: .bilinear)
    #expect(out.pixels == [0, 1, 3, 4, 2, 3, 5, 6, 6, 7, 9, 10, 8, 9, 11, 12])
}

@Test func bilinearSameSizeIsIdentityAndHalvingAveragesPairs() {
    let src = image(1, 4, [0, 10, 20, 40])
    #expect(Resize.resize(src, height: 1, width: 4, method: .bilinear).pixels == [0, 10, 20, 40])
    // 4 -> 2: x = 0.5, 2.5 -> means of neighbours.
    #expect(Resize.resize(src, height: 1, width: 2, method: .bilinear).pixels == [5, 30])
}

@Test func areaDownscale4x4To2x2AveragesBlocks() {
    let out = Resize.resize(image(4, 4, (0..<16).map(Float.init)), height: 2, width: 2, method: .area)
    #expect(out.pixels == [2.5, 4.5, 10.5, 12.5])
}

@Test func areaFractionalBoxesWeighByOverlap() {
    // 3 -> 2: scale 1.5; box [0, 1.5) = (2a + b) / 3, box [1.5, 3) = (b + 2c) / 3.
    let out = Resize.resize(image(1, 3, [3, 6, 12]), height: 1, width: 2, method: .area)
    #expect(abs(out.pixels[0] - 4) < 1e-5)
    #expect(abs(out.pixels[1] - 10) < 1e-5)
    // Upscaling by 2 repeats pixels (each box lies inside one source pixel).
    #expect(Resize.resize(image(1, 2, [1, 5]), height: 1, width: 4, method: .area).pixels == [1, 1, 5, 5])
}

@Test func nearestPicksFloorOfScaledIndex() {
    #expect(Resize.resize(image(1, 4, [1, 2, 3, 4]), height: 1, width: 2, method: .nearest).pixels == [1, 3])
    #expect(Resize.resize(image(1, 2, [1, 2]), height: 1, width: 4, method: .nearest).pixels == [1, 1, 2, 2])
    #expect(Resize.resize(image(1, 3, [1, 2, 3]), height: 1, width: 2, method: .nearest).pixels == [1, 2])
    let out = Resize.resize(image(2, 2, [0, 1, 2, 3]), height: 4, width: 4, method: .nearest)
    #expect(out.pixels == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3])
}

@Test func tapsSumToOneForEveryMethodAndScale() {
    for method in ResizeMethod.allCases {
        for (i, o) in [(7, 3), (3, 7), (224, 256), (500, 224), (1, 5), (5, 1)] {
            for taps in Resize.taps(inSize: i, outSize: o, method: method) {
                #expect(abs(taps.reduce(0) { $0 + $1.1 } - 1) < 1e-5, "\(method) \(i)->\(o)")
                #expect(taps.allSatisfy { $0.0 >= 0 && $0.0 < i })
            }
        }
    }
}
