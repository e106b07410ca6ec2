import Foundation
import QuantCore
import Testing
@testable import QuantData

private func decode(_ b: [UInt8]) throws -> Tensor { try b.withUnsafeBytes { try Npy.decode($0) } }

@Test func npyFloat32COrder() throws {
    let b = Fixtures.npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", Fixtures.bytes([Float(0), 1, 2, 3, 4, 5]))
    let t = try decode(b)
    #expect(t.dtype == .float && t.shape == [2, 3] && t.floats() == [0, 1, 2, 3, 4, 5])
}

@Test func npyFloat32FortranOrderBecomesCOrder() throws {
    // C array [[0,1,2],[3,4,5]] stored column-major: 0,3,1,4,2,5.
    let b = Fixtures.npyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", Fixtures.bytes([Float(0), 3, 1, 4, 2, 5]))
    #expect(try decode(b).floats() == [0, 1, 2, 3, 4, 5])
    // Rank 3, shape (2,2,2): F index = i + 2j + 4k.
    var f: [Float] = []
    for n in 0..<8 {
        let i: Int = n % 2, j: Int = (n / 2) % 2, k: Int = n / 4
        f.append(Float(4 * i + 2 * j + k))
    }
    let c = try decode(Fixtures.npyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2, 2), }", Fixtures.bytes(f)))
    #expect(c.floats() == (0..<8).map(Float.init))
}

@Test func npyUint8Float16BoolInt64() throws {
    let u8 = try decode(Fixtures.npyBytes("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", [0, 1, 128, 255]))
    #expect(u8.dtype == .uint8 && u8.shape == [4] && u8.int64s() == [0, 1, 128, 255])
    let f16 = try decode(Fixtures.npyBytes("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", Fixtures.bytes([UInt16(0x3C00), 0xC000])))
    #expect(f16.dtype == .float16 && f16.floats() == [1, -2])
    let b1 = try decode(Fixtures.npyBytes("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", [1, 0, 1]))
    #expect(b1.dtype == .bool && b1.int64s() == [1, 0, 1])
    let i8 = try decode(Fixtures.npyBytes("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 2), }", Fixtures.bytes([Int64(-1), 3, 2, 1 << 40])))
    #expect(i8.dtype == .int64 && i8.int64s() == [-1, 2, 3, 1 << 40])
}

@Test func npyBigEndianVersion2AndScalars() throws {
    let be = try decode(Fixtures.npyBytes("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", [0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFE]))
    #expect(be.int64s() == [256, -2])
    let v2 = try decode(Fixtures.npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", Fixtures.bytes([2.5]), major: 2))
    #expect(v2.dtype == .double && v2.doubles() == [2.5])
    let scalar = try decode(Fixtures.npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", Fixtures.bytes([Float(7)])))
    #expect(scalar.shape == [] && scalar.floats() == [7])
}

@Test func npyRejectsBadFiles() {
    #expect(throws: NpyProblem.self) { try decode(Array("not numpy at all".utf8)) }
    #expect(throws: NpyProblem.self) { try decode(Fixtures.npyBytes("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", [UInt8](repeating: 0, count: 8))) }
    #expect(throws: NpyProblem.self) { try decode(Fixtures.npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", [0, 0, 0, 0])) }
    #expect(throws: NpyProblem.self) { try decode(Fixtures.npyBytes("{'descr': '<f4', 'shape': (1,), }", [0, 0, 0, 0])) }
}

@Test func npyEncodeRoundTripsAndHeaderIsAligned() throws {
    for dtype in [DType.float, .float16, .double, .int8, .uint8, .int16, .uint16, .int32, .uint32, .int64, .uint64, .bool] {
        let t = TensorConversion.convert(Tensor(shape: [2, 3], values: [Int64(0), 1, 0, 1, 5, 7]), to: dtype)
        let data = try #require(Npy.encode(t))
        let back = try data.withUnsafeBytes { try Npy.decode($0) }
        #expect(back.bitwiseEqual(t), "\(dtype)")
        let h = try data.withUnsafeBytes { try Npy.parseHeader($0) }
        #expect(h.dataOffset % 64 == 0)
    }
}
