import QuantCore
import QuantExecutor
import QuantIR
import Testing

@Test func matMulOneDimensionalOperands() throws {
    let v = Tensor(shape: [2], floats: [1, 2])
    let m = Tensor(shape: [2, 2], floats: [1, 2, 3, 4])
    let vm = try runNode("MatMul", [v, m])[0]
    #expect(vm.shape == [2] && vm.floats() == [7, 10])
    let mv = try runNode("MatMul", [m, v])[0]
    #expect(mv.shape == [2] && mv.floats() == [5, 11])
    let dot = try runNode("MatMul", [v, v])[0]
    #expect(dot.shape == [] && dot.floats() == [5])
}

@Test func matMulBroadcastsBatches() throws {
    let a = Tensor(shape: [2, 1, 1, 2], floats: [1, 0, 0, 1])
    let b = Tensor(shape: [3, 2, 1], floats: [1, 2, 3, 4, 5, 6])
    let y = try runNode("MatMul", [a, b])[0]
    #expect(y.shape == [2, 3, 1, 1])
    #expect(y.floats() == [1, 3, 5, 2, 4, 6])
}

@Test func gemmBroadcastsC() throws {
    let a = Tensor(shape: [2, 1], floats: [1, 2])
    let b = Tensor(shape: [1, 2], floats: [3, 4])
    let c = Tensor(shape: [2], floats: [10, 20])
    let y = try runNode("Gemm", [a, b, c], attributes: [.float("alpha", 2), .float("beta", 0.5)])[0]
    #expect(y.floats() == [11, 18, 17, 26])
}

@Test func einsumCommonForms() throws {
    let x = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
    #expect(try runNode("Einsum", [x], attributes: [.string("equation", "ij->i")])[0].floats() == [6, 15])
    #expect(try runNode("Einsum", [x], attributes: [.string("equation", "ij->ji")])[0].floats() == [1, 4, 2, 5, 3, 6])
    let q = Tensor(shape: [1, 1, 2, 2], floats: [1, 2, 3, 4])
    let k = Tensor(shape: [1, 1, 2, 2], floats: [1, 0, 0, 1])
    let s = try runNode("Einsum", [q, k], attributes: [.string("equation", "bhqd,bhkd->bhqk")])[0]
    #expect(s.shape == [1, 1, 2, 2] && s.floats() == [1, 2, 3, 4])
    let d = Tensor(shape: [2, 2], floats: [1, 2, 3, 4])
    #expect(try runNode("Einsum", [d], attributes: [.string("equation", "ii->i")])[0].floats() == [1, 4])
    #expect(try runNode("Einsum", [d], attributes: [.string("equation", "ii")])[0].floats() == [5])
}

@Test func einsumContractionWithReorderedOutput() throws {
    // "ij,jk->ki" is (A·B)ᵀ: A = [[1,2],[3,4]], B = [[5,6],[7,8]], A·B = [[19,22],[43,50]].
    let a = Tensor(shape: [2, 2], floats: [1, 2, 3, 4])
    let b = Tensor(shape: [2, 2], floats: [5, 6, 7, 8])
    let y = try runNode("Einsum", [a, b], attributes: [.string("equation", "ij,jk->ki")])[0]
    #expect(y.floats() == [19, 43, 22, 50])
    // Batch label in the middle of the output: "bij,bjk->ibk".
    let a3 = Tensor(shape: [2, 1, 2], floats: [1, 2, 3, 4])
    let b3 = Tensor(shape: [2, 2, 1], floats: [1, 1, 2, 0])
    let z = try runNode("Einsum", [a3, b3], attributes: [.string("equation", "bij,bjk->ibk")])[0]
    #expect(z.shape == [1, 2, 1] && z.floats() == [3, 6])
}
