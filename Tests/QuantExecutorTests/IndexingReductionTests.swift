import QuantCore
import QuantExecutor
import QuantIR
import Testing

@Test func topKKeepsLowerIndexOnTies() throws {
    let x = Tensor(shape: [1, 5], floats: [1, 3, 2, 3, 0])
    let out = try runNode("TopK", [x, Tensor(shape: [1], values: [Int64(3)])], outputs: 2, opset: 11)
    #expect(out[0].floats() == [3, 3, 2])
    #expect(out[1].int64s() == [1, 3, 2])
    let smallest = try runNode("TopK", [x, Tensor(shape: [1], values: [Int64(2)])], attrs: [.int("largest", 0)], outputs: 2, opset: 11)
    #expect(smallest[1].int64s() == [4, 0])
}

@Test func argMaxSelectLastIndex() throws {
    let x = Tensor(shape: [2, 3], floats: [1, 4, 4, 2, 2, 0])
    #expect(try runNode("ArgMax", [x], attrs: [.int("axis", 1)])[0].int64s() == [1, 0])
    let last = try runNode("ArgMax", [x], attrs: [.int("axis", 1), .int("select_last_index", 1), .int("keepdims", 0)])[0]
    #expect(last.shape == [2])
    #expect(last.int64s() == [2, 1])
}

@Test func gatherWrapsNegativeIndicesAndScatterReduces() throws {
    let data = Tensor(shape: [3, 2], floats: [1, 2, 3, 4, 5, 6])
    let g = try runNode("Gather", [data, Tensor(shape: [2], values: [Int64(-1), 0])])[0]
    #expect(g.floats() == [5, 6, 1, 2])
    // ScatterND with reduction add: the same row twice accumulates.
    let idx = Tensor(shape: [2, 1], values: [Int64(1), 1])
    let upd = Tensor(shape: [2, 2], floats: [10, 10, 1, 1])
    let s = try runNode("ScatterND", [data, idx, upd], attrs: [.string("reduction", "add")])[0]
    #expect(s.floats() == [1, 2, 14, 15, 5, 6])
    // Out-of-range indices are rejected, not read.
    #expect(throws: (any Error).self) { try runNode("Gather", [data, Tensor(shape: [1], values: [Int64(3)])]) }
}

@Test func cumSumExclusiveReverse() throws {
    let x = Tensor(shape: [4], values: [Int32(1), 2, 3, 4])
    let y = try runNode("CumSum", [x, Tensor(shape: [], values: [Int64(0)])], attrs: [.int("exclusive", 1), .int("reverse", 1)])[0]
    #expect(y.int64s() == [9, 7, 4, 0])
}

@Test func reduceAxesAttributeVersusInput() throws {
    let x = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
    // Opset 13: ReduceMean axes is an attribute.
    #expect(try runNode("ReduceMean", [x], attrs: [.ints("axes", [1])], opset: 13)[0].floats() == [2, 5])
    // Opset 18: axes is an input; empty axes with noop_with_empty_axes is the identity.
    let sum = try runNode("ReduceSum", [x, Tensor(shape: [1], values: [Int64(0)])], attrs: [.int("keepdims", 0)], opset: 18)[0]
    #expect(sum.shape == [3])
    #expect(sum.floats() == [5, 7, 9])
    let noop = try runNode("ReduceMax", [x, Tensor(shape: [0], values: [Int64]())], attrs: [.int("noop_with_empty_axes", 1)], opset: 18)[0]
    #expect(noop.floats() == x.floats())
    // Reducing over a non-trailing axis of a 3-D tensor gathers strided rows.
    let t = Tensor(shape: [2, 2, 2], floats: [1, 2, 3, 4, 5, 6, 7, 8])
    #expect(try runNode("ReduceLogSumExp", [t, Tensor(shape: [2], values: [Int64(0), 2])], opset: 18)[0].floats().map { ($0 * 1000).rounded() / 1000 }
        == [6.331, 8.331])  // 6 + log(e^-5 + e^-4 + e^-1 + 1), and 2 more
}
