import Foundation
import QuantCore
import Testing

@Test func halfFloatKnownValues() {
    // Hand-computed binary16 encodings.
    let cases: [(Float, UInt16)] = [
        (0, 0x0000), (-0.0, 0x8000), (1, 0x3C00), (-2, 0xC000), (0.5, 0x3800),
        (65504, 0x7BFF), (.infinity, 0x7C00), (5.960464477539063e-08, 0x0001), (6.103515625e-05, 0x0400),
    ]
    for (f, h) in cases {
        #expect(HalfFloat.fromFloat(f) == h, "encode \(f)")
        #expect(HalfFloat.toFloat(h) == f, "decode \(h)")
    }
    #expect(HalfFloat.fromFloat(1e6) == 0x7C00)  // overflow saturates to infinity
    #expect(HalfFloat.toFloat(0x7E00).isNaN)
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
    #expect(HalfFloat.fromFloat(1 + 1.0 / 2048) == 0x3C00)
    #expect(HalfFloat.fromFloat(1 + 3.0 / 2048) == 0x3C02)
}

@Test func halfFloatRoundTripsEveryFiniteValue() {
    for bits in UInt16.min...UInt16.max where (bits & 0x7C00) != 0x7C00 {
        #expect(HalfFloat.fromFloat(HalfFloat.toFloat(bits)) == bits)
    }
}

@Test func bfloat16RoundsToNearestEven() {
    #expect(BFloat16.fromFloat(1) == 0x3F80)
    #expect(BFloat16.toFloat(0x3F80) == 1)
    // 1 + 2^-8 is a tie between 1 (even) and 1 + 2^-7.
    #expect(BFloat16.fromFloat(1 + 1.0 / 256) == 0x3F80)
    #expect(BFloat16.fromFloat(1 + 3.0 / 256) == 0x3F82)
}

@Test func packedInt4AndUInt4Decode() throws {
    // Elements [1, -2, 7, -8, 3]: low nibble first, odd count pads the last byte.
    let bytes: [UInt8] = [0xE1, 0x87, 0x03]
    let t = try bytes.withUnsafeBytes { try Tensor(dtype: .int4, shape: [5], copying: $0) }
    #expect(t.doubles() == [1, -2, 7, -8, 3])
    let u = try bytes.withUnsafeBytes { try Tensor(dtype: .uint4, shape: [5], copying: $0) }
    #expect(u.doubles() == [1, 14, 7, 8, 3])
    #expect(throws: QuantKitError.self) { try bytes.withUnsafeBytes { try Tensor(dtype: .int4, shape: [7], copying: $0) } }
}

@Test func dtypeSizesAndNames() {
    #expect(DType.float.byteCount(elements: 3) == 12)
    #expect(DType.int4.byteCount(elements: 3) == 2)
    #expect(DType.int2.byteCount(elements: 5) == 2)
    #expect(DType.float6e2m3.byteCount(elements: 4) == 3)
    #expect(DType(name: "float32") == .float)
    #expect(DType(name: "bf16") == .bfloat16)
    #expect(DType(name: "uint4") == .uint4)
    #expect(DType(name: "complex") == nil)
}

@Test func float8Decodes() {
    #expect(Float8.toFloat(0x38, .float8e4m3fn) == 1)  // e=7 (bias 7), m=0
    #expect(Float8.toFloat(0x7E, .float8e4m3fn) == 448)  // largest finite
    #expect(Float8.toFloat(0x7F, .float8e4m3fn).isNaN)
    #expect(Float8.toFloat(0x3C, .float8e5m2) == 1)
    #expect(Float8.toFloat(0x7C, .float8e5m2) == .infinity)
    #expect(Float8.float4e2m1(0xF) == -6)
}

@Test func atomicWriteLeavesTargetUntouchedOnFailure() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qk-atomic-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("out.bin").path
    try AtomicFile.write(Data("old".utf8), to: path)
    struct Boom: Error {}
    #expect(throws: QuantKitError.self) {
        try AtomicFile.write(to: path) { sink in
            try sink.append(Data("partial".utf8))
            throw Boom()
        }
    }
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("old".utf8))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.bin"])
}

@Test func mappedFileReportsMissingFileWithCode() {
    do {
        _ = try MappedFile(path: "/nonexistent/x.bin")
        Issue.record("expected an error")
    } catch let e as QuantKitError {
        #expect(e.code == "QK1001")
        #expect(e.message.contains("/nonexistent/x.bin"))
    } catch {
        Issue.record("unexpected \(error)")
    }
}

@Test func checkedByteCountRefusesNegativeAndOverflowingShapes() {
    #expect(Tensor.checkedByteCount(.float, [2, 3]) == 24)
    #expect(Tensor.checkedByteCount(.int4, [3]) == 2)  // packed, rounded up to whole bytes
    #expect(Tensor.checkedByteCount(.float, []) == 4)
    #expect(Tensor.checkedByteCount(.float, [0, 1 << 62]) == 0)
    #expect(Tensor.checkedByteCount(.float, [-1, 2]) == nil)
    #expect(Tensor.checkedByteCount(.float, [1 << 62, 3]) == nil)  // elements overflow
    #expect(Tensor.checkedByteCount(.double, [1 << 58]) == nil)  // bits overflow
}
