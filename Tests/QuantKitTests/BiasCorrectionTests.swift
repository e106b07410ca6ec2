import QuantKit
import Testing

/// −(W_q − W)·E[x] written out directly, for a Conv weight [O, C/group, kh·kw] whose means are
/// per group and im2col row.
private func naiveConvShift(_ w: [Float], _ q: [Float], outputs: Int, row: Int, means: [[Double]]) -> [Double] {
    (0..<outputs).map { o in
        let g = o / (outputs / means.count)
        return -(0..<row).reduce(0.0) { $0 + Double(q[o * row + $1] - w[o * row + $1]) * means[g][$1] }
    }
}

@Test func convShiftUsesEachGroupsMeans() throws {
    // 4 outputs, 2 groups, 2 input channels per group, 2×1 kernel: 4 weights per output.
    let w: [Float] = (0..<16).map { Float($0) * 0.1 - 0.7 }
    let q: [Float] = w.enumerated().map { $0.element + ($0.offset % 3 == 0 ? 0.01 : -0.02) }
    let means: [[Double]] = [[1, 2, 3, 4], [-1, 0.5, 0, 2]]
    let s = try #require(BiasCorrection.shift(opType: "Conv", weight: w, quantized: q, shape: [4, 2, 2, 1], inputMeans: means))
    let expected = naiveConvShift(w, q, outputs: 4, row: 4, means: means)
    #expect(zip(s, expected).allSatisfy { abs($0 - $1) < 1e-9 })
    // Output 2 is in group 1: its shift must use group 1's means, which differ from group 0's.
    #expect(abs(s[2] - naiveConvShift(w, q, outputs: 4, row: 4, means: [means[0], means[0]])[2]) > 1e-3)
    // Means that do not match the weight's rows are refused.
    #expect(BiasCorrection.shift(opType: "Conv", weight: w, quantized: q, shape: [4, 2, 2, 1], inputMeans: [[1, 2, 3]]) == nil)
}

@Test func gemmShiftFollowsTransB() throws {
    // W as [N=2, K=3] (transB = 1) and the same matrix stored as [K=3, N=2] (transB = 0).
    let wNK: [Float] = [1, 2, 3, 4, 5, 6]
    let dNK: [Float] = [0.1, 0, -0.2, 0, 0.05, 0]
    let qNK = zip(wNK, dNK).map { $0 + $1 }
    let mean: [Double] = [2, -1, 0.5]
    let t = try #require(BiasCorrection.shift(opType: "Gemm", weight: wNK, quantized: qNK, shape: [2, 3], transposed: true, inputMeans: [mean]))
    #expect(abs(t[0] - -(0.1 * 2 - 0.2 * 0.5)) < 1e-6 && abs(t[1] - -(0.05 * -1)) < 1e-6)
    let transpose = { (a: [Float]) in [a[0], a[3], a[1], a[4], a[2], a[5]] }
    let u = try #require(BiasCorrection.shift(opType: "Gemm", weight: transpose(wNK), quantized: transpose(qNK), shape: [3, 2], inputMeans: [mean]))
    #expect(zip(t, u).allSatisfy { abs($0 - $1) < 1e-6 })
}
