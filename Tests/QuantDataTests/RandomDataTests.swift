import QuantCore
import Testing
@testable import QuantData

@Test func randomIntegersStayInRange() {
    let s = RandomData.item(dtype: .int64, shape: [10_000], seed: 1, input: 0, item: 0).int64s()
    #expect(s.min() == -10 && s.max() == 9)
    let u = RandomData.item(dtype: .uint8, shape: [10_000], seed: 1, input: 0, item: 0).int64s()
    #expect(u.min() == 1 && u.max() == 9)
    let b = RandomData.item(dtype: .bool, shape: [1000], seed: 1, input: 0, item: 0)
    #expect(b.dtype == .bool && Set(b.int64s()) == [0, 1])
}

@Test func randomFloatsAreStandardNormal() {
    let v = RandomData.item(dtype: .float, shape: [100_000], seed: 3, input: 0, item: 0).doubles()
    let mean = v.reduce(0, +) / Double(v.count)
    let std = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
    #expect(abs(mean) < 0.02 && abs(std - 1) < 0.02)
    #expect(RandomData.item(dtype: .float16, shape: [4], seed: 3, input: 0, item: 0).dtype == .float16)
}

@Test func randomDataIsDeterministicBySeedAndIndependentOfBatching() throws {
    let sigs = [InputSignature(name: "ids", dtype: .int64, shape: [nil, nil], symbols: ["batch", "seq"]),
                InputSignature(name: "x", dtype: .float, shape: [nil, 3])]
    func stream(seed: UInt64, batch: Int) throws -> [[Double]] {
        var cfg = DatasetConfig(inputs: [InputConfig(name: "ids", source: .random), InputConfig(name: "x", source: .random)],
                                batchSize: batch, seed: seed, randomItems: 4, symbolicDims: ["seq": 5])
        cfg.symbolicDimDefault = 2
        let ds = try CalibrationDataset(signatures: sigs, config: cfg)
        return try Fixtures.all(ds).map { $0.tensors["ids"]!.doubles() + $0.tensors["x"]!.doubles() }
    }
    let a = try stream(seed: 7, batch: 2), b = try stream(seed: 7, batch: 2), c = try stream(seed: 8, batch: 2)
    #expect(a == b && a != c)
    let ones = try stream(seed: 7, batch: 1)
    // Same items whatever the batch size: batch 0 of size 2 = items 0 and 1.
    #expect(Array(a[0][0..<10]) == Array(ones[0][0..<5]) + Array(ones[1][0..<5]))
    let ds = try CalibrationDataset(signatures: sigs, config: DatasetConfig(inputs: [InputConfig(name: "ids", source: .random), InputConfig(name: "x", source: .random)], batchSize: 3, steps: 2))
    let batches = try Fixtures.all(ds)
    #expect(batches.map { $0.tensors["ids"]!.shape } == [[3, 1], [3, 1]])
    #expect(batches[0].tensors["x"]!.shape == [3, 3])
}
