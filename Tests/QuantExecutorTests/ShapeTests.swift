import QuantCore
import QuantExecutor
import QuantIR
import Testing

@Test func castRoundsThroughHalfAndTruncatesToIntegers() throws {
    // 1 + 2^-11 lies halfway between two halves: ties to even gives 1; 1 + 3·2^-11 rounds up.
    let x = Tensor(shape: [3], floats: [1 + 1.0 / 2048, 1 + 3.0 / 2048, 70000])
    let h = try runNode("Cast", [x], attrs: [.int("to", Int(DType.float16.rawValue))])[0]
    #expect(h.dtype == .float)  // float16 values in float32 storage (ComputeType)
    #expect(h.floats() == [1, 1 + 2.0 / 1024, .infinity])
    let f = Tensor(shape: [4], floats: [-2.7, 2.7, .nan, 1e20])
    let i = try runNode("Cast", [f], attrs: [.int("to", Int(DType.int32.rawValue))])[0]
    #expect(i.int64s() == [-2, 2, 0, Int64(Int32.max)])
    // Integer narrowing wraps like a C cast.
    let w = try runNode("Cast", [Tensor(shape: [2], values: [Int64(300), -1])], attrs: [.int("to", Int(DType.uint8.rawValue))])[0]
    #expect(w.int64s() == [44, 255])
}

/// Float -> 4/2-bit integers: the ONNX spec leaves values out of range undefined; QuantKit
/// rounds to nearest even and keeps the low bits, as ONNX's int4 note says and ONNX Runtime
/// does for out-of-range values (the node suite's expectations depend on ml_dtypes for those,
/// whence its pin in scripts/requirements-referees.txt).
@Test func castToFourAndTwoBitIntegersRoundsToEvenAndKeepsTheLowBits() throws {
    let x = Tensor(shape: [8], floats: [-9, -8, 2.5, 3.5, 7, 8, 15, 17])
    func roundTrip(_ to: DType) throws -> [Float] {
        let packed = try runNode("Cast", [x], attrs: [.int("to", Int(to.rawValue))], opset: 21)[0]
        #expect(packed.dtype == to)
        return try runNode("Cast", [packed], attrs: [.int("to", Int(DType.float.rawValue))], opset: 21)[0].floats()
    }
    #expect(try roundTrip(.int4) == [7, -8, 2, 4, 7, -8, -1, 1])
    #expect(try roundTrip(.uint4) == [7, 8, 2, 4, 7, 8, 15, 1])
    #expect(try roundTrip(.int2) == [-1, 0, -2, 0, -1, 0, -1, 1])
    #expect(try roundTrip(.uint2) == [3, 0, 2, 0, 3, 0, 3, 1])
}

@Test func reshapeCopiesZerosAndInfersMinusOne() throws {
    let x = Tensor(shape: [2, 3, 4], floats: (0..<24).map(Float.init))
    let y = try runNode("Reshape", [x, Tensor(shape: [2], values: [Int64(0), -1])])[0]
    #expect(y.shape == [2, 12])
    let z = try runNode("Reshape", [Tensor(shape: [0, 3], floats: []), Tensor(shape: [2], values: [Int64(3), 0])], attrs: [.int("allowzero", 1)], opset: 14)[0]
    #expect(z.shape == [3, 0])
}

@Test func sliceNegativeStepsClamp() throws {
    let x = Tensor(shape: [10], floats: (0..<10).map(Float.init))
    let i = { (v: Int64) in Tensor(shape: [1], values: [v]) }
    // starts -1 (= 9), ends far below 0 (clamped to "before 0"), step -3.
    #expect(try runNode("Slice", [x, i(-1), i(-100), i(0), i(-3)])[0].floats() == [9, 6, 3, 0])
    // Opset 1-9 attribute form, ends past the end.
    #expect(try runNode("Slice", [x], attrs: [.ints("starts", [7]), .ints("ends", [1000])], opset: 9)[0].floats() == [7, 8, 9])
}

@Test func padModes() throws {
    let x = Tensor(shape: [3], floats: [1, 2, 3])
    let pads = Tensor(shape: [2], values: [Int64(2), 2])
    #expect(try runNode("Pad", [x, pads], attrs: [.string("mode", "reflect")])[0].floats() == [3, 2, 1, 2, 3, 2, 1])
    #expect(try runNode("Pad", [x, pads], attrs: [.string("mode", "edge")])[0].floats() == [1, 1, 1, 2, 3, 3, 3])
    #expect(try runNode("Pad", [x, pads], attrs: [.string("mode", "wrap")], opset: 19)[0].floats() == [2, 3, 1, 2, 3, 1, 2])
    #expect(try runNode("Pad", [x, pads, Tensor(shape: [], floats: [9])])[0].floats() == [9, 9, 1, 2, 3, 9, 9])
    // Negative pads crop.
    #expect(try runNode("Pad", [x, Tensor(shape: [2], values: [Int64(-1), 1])])[0].floats() == [2, 3, 0])
}

@Test func transposeTiledPathMatchesDefinition() throws {
    // NCHW -> NHWC moves the contiguous axis: the tiled copy must equal the index formula.
    let (n, c, h, w) = (2, 19, 9, 37)
    let x = Tensor(shape: [n, c, h, w], floats: (0..<(n * c * h * w)).map(Float.init))
    let y = try runNode("Transpose", [x], attrs: [.ints("perm", [0, 2, 3, 1])], threads: 3)[0]
    #expect(y.shape == [n, h, w, c])
    let yf = y.floats()
    var ok = true
    for a in 0..<n { for b in 0..<h { for d in 0..<w { for e in 0..<c {
        if yf[((a * h + b) * w + d) * c + e] != Float(((a * c + e) * h + b) * w + d) { ok = false }
    } } } }
    #expect(ok)
}

@Test func splitIntoUnequalParts() throws {
    let x = Tensor(shape: [7], floats: (0..<7).map(Float.init))
    // num_outputs = 3 over 7 elements: ceil(7/3) = 3, so parts 3, 3, 1.
    let parts = try runNode("Split", [x], attrs: [.int("num_outputs", 3)], outputs: 3, opset: 18)
    #expect(parts.map(\.shape) == [[3], [3], [1]])
    #expect(parts[2].floats() == [6])
}
