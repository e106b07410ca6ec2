import QuantCore
import QuantExecutor
import QuantIR
import Testing

private func q(_ x: Tensor, _ scale: Tensor, _ zp: Tensor?, _ attrs: [Attribute] = [], opset: Int = 21, domain: String = "") throws -> Tensor {
    let node = Node(name: "q", opType: "QuantizeLinear", domain: domain, inputs: ["x", "s"] + (zp == nil ? [] : ["z"]), outputs: ["y"], attributes: attrs)
    return try runNode(node, [("x", x), ("s", scale)] + (zp.map { [("z", $0)] } ?? []), opset: opset)[0]
}

private func dq(_ x: Tensor, _ scale: Tensor, _ zp: Tensor?, _ attrs: [Attribute] = []) throws -> Tensor {
    let node = Node(name: "dq", opType: "DequantizeLinear", inputs: ["x", "s"] + (zp == nil ? [] : ["z"]), outputs: ["y"], attributes: attrs)
    return try runNode(node, [("x", x), ("s", scale)] + (zp.map { [("z", $0)] } ?? []))[0]
}

/// A copy of the tensor's bytes, taken while `t` keeps its storage alive.
private func packedBytes(_ t: Tensor) -> [UInt8] {
    (0..<t.byteCount).map { t.storage.pointer.load(fromByteOffset: $0, as: UInt8.self) }
}

@Test func quantizeRoundsHalfToEvenAndSaturates() throws {
    let x = Tensor(shape: [6], floats: [0.5, 1.5, 2.5, -0.5, 300, -3])
    let one = Tensor(shape: [], floats: [1])
    let u = try q(x, one, nil)
    #expect(u.dtype == .uint8 && u.int64s() == [0, 2, 2, 0, 255, 0])
    let s = try q(x, one, Tensor(shape: [], values: [Int8(1)]))
    #expect(s.dtype == .int8 && s.int64s() == [1, 3, 3, 1, 127, -2])
    // The com.microsoft spelling ORT's quantizer emits behaves the same.
    #expect(try q(x, one, Tensor(shape: [], values: [Int8(1)]), domain: "com.microsoft").int64s() == s.int64s())
    // NaN does not trap: it saturates to the low end.
    #expect(try q(Tensor(shape: [1], floats: [.nan]), one, nil).int64s() == [0])
}

@Test func perAxisAndBlockedScales() throws {
    // Per axis 0: row 0 scale 1, row 1 scale 2, zero points 0 and 10.
    let x = Tensor(shape: [2, 2], floats: [3, -4, 3, -4])
    let y = try q(x, Tensor(shape: [2], floats: [1, 2]), Tensor(shape: [2], values: [Int8(0), 10]), [.int("axis", 0)])
    #expect(y.int64s() == [3, -4, 12, 8])
    #expect(try dq(y, Tensor(shape: [2], floats: [1, 2]), Tensor(shape: [2], values: [Int8(0), 10]), [.int("axis", 0)]).floats() == [3, -4, 4, -4])
    // Blocks of 2 along axis 1 (the last block is short): scales [1, 4] for columns 0-1 and 2.
    let b = try q(Tensor(shape: [1, 3], floats: [5, 6, 10]), Tensor(shape: [1, 2], floats: [1, 4]), nil, [.int("axis", 1), .int("block_size", 2)])
    #expect(b.int64s() == [5, 6, 2])
    #expect(try dq(b, Tensor(shape: [1, 2], floats: [1, 4]), nil, [.int("axis", 1), .int("block_size", 2)]).floats() == [5, 6, 8])
    // A scale that fits neither per-axis nor blocked is rejected with QK3004.
    #expect(throws: QuantKitError.self) { try q(x, Tensor(shape: [3], floats: [1, 2, 3]), nil, [.int("axis", 0)]) }
}

@Test func int4PacksLowNibbleFirst() throws {
    let y = try q(Tensor(shape: [4], floats: [1, -2, 7, 9]), Tensor(shape: [], floats: [1]), Tensor(dtype: .int4, shape: []))
    #expect(y.dtype == .int4 && packedBytes(y) == [0xE1, 0x77])
    #expect(try dq(y, Tensor(shape: [], floats: [0.5]), nil).floats() == [0.5, -1, 3.5, 3.5])
    let u = try q(Tensor(shape: [3], floats: [1, 20, 2]), Tensor(shape: [], floats: [1]), Tensor(dtype: .uint4, shape: []))
    #expect(packedBytes(u) == [0xF1, 0x02])
}

@Test func float8RoundsToNearestEvenAndSaturates() throws {
    let x = Tensor(shape: [5], floats: [448, 500, 0.001953125, -1.0625, 1.1875])
    let zp = Tensor(dtype: .float8e4m3fn, shape: [])
    // 448 is the largest finite e4m3fn (0x7E); 500 saturates to it or becomes NaN (0x7F);
    // 2^-9 is the smallest subnormal; -1.0625 ties to even -1 (0xB8); 1.1875 ties up to 1.25 (0x3A).
    #expect(packedBytes(try q(x, Tensor(shape: [], floats: [1]), zp)) == [0x7E, 0x7E, 0x01, 0xB8, 0x3A])
    #expect(packedBytes(try q(x, Tensor(shape: [], floats: [1]), zp, [.int("saturate", 0)])) == [0x7E, 0x7F, 0x01, 0xB8, 0x3A])
}

@Test func dynamicQuantizeLinearIncludesZero() throws {
    // Range [-1, 2] -> scale 3/255, zero point round(1 / scale) = 85.
    let node = Node(name: "dq", opType: "DynamicQuantizeLinear", inputs: ["x"], outputs: ["y", "s", "z"])
    let out = try runNode(node, [("x", Tensor(shape: [4], floats: [-1, 0, 1, 2]))], opset: 11)
    let scale: Float = 3 / 255
    #expect(out[1].floats() == [scale] && out[2].int64s() == [85])
    #expect(out[0].int64s() == [0, 85, Int64((1 / scale).rounded(.toNearestOrEven)) + 85, 255])
}

@Test func matMulIntegerSubtractsZeroPoints() throws {
    // (A - 1) · (B - [0, 2]) with A = [[1, 2], [3, 4]], B = [[1, 2], [3, 4]].
    let node = Node(name: "mm", opType: "MatMulInteger", inputs: ["A", "B", "a0", "b0"], outputs: ["Y"])
    let out = try runNode(node, [("A", Tensor(shape: [2, 2], values: [UInt8(1), 2, 3, 4])), ("B", Tensor(shape: [2, 2], values: [UInt8(1), 2, 3, 4])),
                                 ("a0", Tensor(shape: [], values: [UInt8(1)])), ("b0", Tensor(shape: [2], values: [UInt8(0), 2]))], opset: 10)
    // A' = [[0, 1], [2, 3]], B' = [[1, 0], [3, 2]].
    #expect(out[0].dtype == .int32 && out[0].int64s() == [3, 2, 11, 6])
}

@Test func convIntegerGroupedWithPadding() throws {
    // x' = x - 1 = [[0, 1, 2], [3, 4, 5]], group 2, kernels [1, 1] and [1, -1], one pad in front:
    // channel 0 sums neighbours of [0, 0, 1, 2] -> [0, 1, 3]; channel 1 differences of [0, 3, 4, 5] -> [-3, -1, -1].
    let node = Node(name: "ci", opType: "ConvInteger", inputs: ["x", "w", "xz"], outputs: ["y"],
                    attributes: [.int("group", 2), .ints("pads", [1, 0]), .ints("kernel_shape", [2])])
    let out = try runNode(node, [("x", Tensor(shape: [1, 2, 3], values: [UInt8(1), 2, 3, 4, 5, 6])),
                                 ("w", Tensor(shape: [2, 1, 2], values: [Int8(1), 1, 1, -1])),
                                 ("xz", Tensor(shape: [], values: [UInt8(1)]))], opset: 10)
    #expect(out[0].shape == [1, 2, 3] && out[0].int64s() == [0, 1, 3, -3, -1, -1])
}

@Test func qLinearMatMulRequantizes() throws {
    // A' = [2, 4] (scale 0.5), B' = [3, 5] - 1 = [2, 4] (scale 1): acc 20, y = rint(20 · 0.5 / 2) + 10 = 15.
    let node = Node(name: "qmm", opType: "QLinearMatMul", inputs: ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], outputs: ["y"])
    let out = try runNode(node, [
        ("a", Tensor(shape: [1, 2], values: [UInt8(2), 4])), ("as", Tensor(shape: [], floats: [0.5])), ("az", Tensor(shape: [], values: [UInt8(0)])),
        ("b", Tensor(shape: [2, 1], values: [UInt8(3), 5])), ("bs", Tensor(shape: [], floats: [1])), ("bz", Tensor(shape: [], values: [UInt8(1)])),
        ("ys", Tensor(shape: [], floats: [2])), ("yz", Tensor(shape: [], values: [UInt8(10)])),
    ], opset: 10)
    #expect(out[0].dtype == .uint8 && out[0].int64s() == [15])
}
