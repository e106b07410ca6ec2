import CKernels
import Foundation
import QuantCore
import QuantExecutor
import QuantIR
import Testing

/// The epilogues `qk_gemm_packed` must apply at the store, as (kernel struct, reference).
private let epilogues: [(String, qk_epilogue?)] = [
    ("none", nil),
    ("scale-shift", qk_epilogue(act: 0, a: 0, b: 0, pre_scale: 0.5, pre_shift: 0.25, post_scale: 1, post_shift: 0)),
    ("relu", qk_epilogue(act: 1, a: 0, b: 0, pre_scale: 1, pre_shift: 0, post_scale: 1, post_shift: 0)),
    ("clip", qk_epilogue(act: 2, a: -0.5, b: 0.75, pre_scale: 1, pre_shift: 0, post_scale: 1, post_shift: 0)),
    ("hardswish", qk_epilogue(act: 3, a: 1.0 / 6, b: 0.5, pre_scale: 2, pre_shift: 1, post_scale: 0.5, post_shift: -0.5)),
    ("hardsigmoid", qk_epilogue(act: 4, a: 0.2, b: 0.5, pre_scale: 1, pre_shift: 0, post_scale: 3, post_shift: 1)),
]

/// `post_scale · act(pre_scale · v + pre_shift) + post_shift` in Double.
private func referenceEpilogue(_ v: Double, _ e: qk_epilogue?) -> Double {
    guard let e else { return v }
    let x = v * Double(e.pre_scale) + Double(e.pre_shift)
    let a = Double(e.a), b = Double(e.b)
    let y: Double
    switch e.act {
    case 1: y = max(x, 0)
    case 2: y = min(max(x, a), b)
    case 3: y = x * min(max(x * a + b, 0), 1)
    case 4: y = min(max(x * a + b, 0), 1)
    default: y = x
    }
    return y * Double(e.post_scale) + Double(e.post_shift)
}

private func randomFloats(_ count: Int, seed: inout UInt64) -> [Float] {
    (0..<count).map { _ in
        seed = seed &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int(seed >> 40) % 2001 - 1000) / 1000
    }
}

/// Runs `qk_gemm_packed_isa` on rows [r0, r1) and columns [c0, c1) of an m×n product of depth
/// k, with row strides wider than n, and checks every written value against a Double reference
/// and every other value (outside the range, and in the stride padding) against its sentinel.
private func checkGEMM(isa: Int32, m: Int, n: Int, k: Int, rows: Range<Int>, cols: Range<Int>, bias: Bool,
                       epilogue: qk_epilogue?) -> (maxError: Double, untouched: Bool) {
    var seed = UInt64(m * 1000 + n * 10 + k)
    let lda = k + 1, ldb = n + 3, ldc = n + 5
    let a = randomFloats(m * lda, seed: &seed), b = randomFloats(k * ldb, seed: &seed)
    let bv = randomFloats(m, seed: &seed)
    var packed = [Float](repeating: .nan, count: max(qk_gemm_packed_count(m, k), 1))
    qk_gemm_pack(a, lda, m, k, &packed)
    let sentinel: Float = 12345
    var c = [Float](repeating: sentinel, count: m * ldc)
    var scratch = [Float](repeating: 0, count: max(qk_gemm_scratch(k), 1))
    var e = epilogue ?? qk_epilogue()
    withUnsafePointer(to: &e) { ep in
        qk_gemm_packed_isa(isa, packed, m, k, b, ldb, &c, ldc, rows.lowerBound, rows.upperBound, cols.lowerBound, cols.upperBound,
                           bias ? bv : nil, epilogue == nil ? nil : ep, &scratch)
    }
    var maxError = 0.0, untouched = true
    for i in 0..<m {
        for j in 0..<ldc {
            let got = c[i * ldc + j]
            guard rows.contains(i), cols.contains(j) else {
                untouched = untouched && got == sentinel
                continue
            }
            var sum = bias ? Double(bv[i]) : 0
            for kk in 0..<k { sum += Double(a[i * lda + kk]) * Double(b[kk * ldb + j]) }
            maxError = max(maxError, abs(Double(got) - referenceEpilogue(sum, epilogue)))
        }
    }
    return (maxError, untouched)
}

@Test(arguments: [QK_ISA_PORTABLE, QK_ISA_AVX2, QK_ISA_AVX512])
func packedGEMMMatchesReferenceForOddSizesAndEveryEpilogue(_ isa: qk_isa) {
    // Rows around the 4- and 8-row panels, columns around the 8/16-lane vectors and 24/48-column
    // tiles, depth 0 (bias only), 1 and odd.
    for (m, n, k) in [(1, 1, 1), (5, 7, 3), (8, 16, 20), (13, 17, 9), (17, 49, 33), (24, 100, 0), (9, 47, 2), (16, 48, 64), (3, 25, 5), (5, 52, 7), (11, 4, 6)] {
        for (name, e) in epilogues {
            for bias in [false, true] {
                let r = checkGEMM(isa: Int32(isa.rawValue), m: m, n: n, k: k, rows: 0..<m, cols: 0..<n, bias: bias, epilogue: e)
                #expect(r.maxError < 1e-4, "isa \(isa.rawValue) \(m)x\(n)x\(k) \(name) bias \(bias): error \(r.maxError)")
                #expect(r.untouched, "isa \(isa.rawValue) \(m)x\(n)x\(k) \(name): wrote outside its range")
            }
        }
    }
}

@Test(arguments: [QK_ISA_PORTABLE, QK_ISA_AVX2, QK_ISA_AVX512])
func packedGEMMWritesOnlyItsTile(_ isa: qk_isa) {
    // The parallel split hands each thread a block of 8-row panels or of columns.
    for (rows, cols) in [(8..<19, 0..<61), (0..<8, 13..<50), (16..<19, 48..<61), (0..<19, 60..<61)] {
        let r = checkGEMM(isa: Int32(isa.rawValue), m: 19, n: 61, k: 11, rows: rows, cols: cols, bias: true, epilogue: epilogues[4].1)
        #expect(r.maxError < 1e-4, "isa \(isa.rawValue) rows \(rows) cols \(cols): error \(r.maxError)")
        #expect(r.untouched, "isa \(isa.rawValue) rows \(rows) cols \(cols): wrote outside its tile")
    }
}

/// Conv with W as an initializer (packed once when the executor compiles the node) against the
/// direct sum, run twice to use the packed weights again:
///
///     x ─ Conv(W, B) ─ y
@Test(arguments: [
    // (channels, out channels, group, kernel, pads)
    (24, 40, 1, [1, 1], [0, 0, 0, 0]),  // pointwise
    (6, 10, 2, [3, 3], [1, 1, 1, 1]),  // grouped im2col
    (3, 32, 1, [3, 3], [0, 1, 1, 0]),  // stem-like
])
func convWithInitializerWeightsMatchesDirectSum(_ c: Int, _ m: Int, _ group: Int, _ k: [Int], _ p: [Int]) throws {
    var seed: UInt64 = 11
    let w = randomTensor([m, c / group] + k, seed: &seed)
    let b = randomTensor([m], seed: &seed)
    let g = Graph(name: "conv", initializers: [Initializer(name: "w", tensor: w), Initializer(name: "b", tensor: b)])
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: nil))]
    g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: nil, shape: nil))]
    g.nodes = [Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["y"],
                    attributes: [.int("group", group), .ints("pads", p)])]
    let ex = try Executor(model: Model(graph: g, opsets: ["": 17]), options: ExecutorOptions(threads: 2))
    for batch in [1, 3] {
        let x = randomTensor([batch, c, 9, 13], seed: &seed)
        let got = try ex.run(["x": x])["y"]!
        let want = naiveConv(x, w, b, strides: [1, 1], pads: p, dilations: [1, 1], group: group)
        #expect(got.shape == want.shape)
        let err = zip(got.floats(), want.floats()).map { abs($0 - $1) }.max() ?? 0
        #expect(err < 1e-4)
    }
}
