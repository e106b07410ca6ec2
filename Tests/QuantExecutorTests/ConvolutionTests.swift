import Foundation
import QuantCore
import QuantExecutor
import QuantIR
import Testing

/// Runs one node on `inputs` (named i0, i1, ...) and returns its outputs.
func runNode(_ op: String, _ inputs: [Tensor?], attributes: [Attribute] = [], outputs: Int = 1, opset: Int = 21) throws -> [Tensor] {
    let names = inputs.enumerated().map { $0.element == nil ? "" : "i\($0.offset)" }
    let outNames = (0..<outputs).map { "o\($0)" }
    let g = Graph(name: op)
    g.inputs = inputs.enumerated().compactMap { k, t in
        t.map { ValueInfo(name: "i\(k)", type: TensorType(elementType: $0.dtype, shape: nil)) }
    }
    g.outputs = outNames.map { ValueInfo(name: $0, type: TensorType(elementType: nil, shape: nil)) }
    g.nodes = [Node(name: "n", opType: op, inputs: names, outputs: outNames, attributes: attributes)]
    let ex = try Executor(model: Model(graph: g, opsets: ["": opset]), options: ExecutorOptions(threads: 2))
    var feeds: [String: Tensor] = [:]
    for (k, t) in inputs.enumerated() { if let t { feeds["i\(k)"] = t } }
    let out = try ex.run(feeds)
    return outNames.map { out[$0]! }
}

/// Direct-sum Conv over 1-3 spatial dimensions (no padding tricks), the reference for the
/// im2col / pointwise / depthwise paths.
func naiveConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, strides s: [Int], pads p: [Int], dilations d: [Int], group: Int) -> Tensor {
    let r = x.rank - 2
    let n = x.shape[0], c = x.shape[1], m = w.shape[0], cg = c / group, mg = m / group
    let inS = Array(x.shape[2...]), k = Array(w.shape[2...])
    var outS = [Int](repeating: 0, count: r)
    for i in 0..<r {
        let span: Int = inS[i] + p[i] + p[i + r] - (k[i] - 1) * d[i] - 1
        outS[i] = span / s[i] + 1
    }
    let xv = x.floats(), wv = w.floats(), bv = b?.floats()
    let inStr = Shapes.strides(inS), outStr = Shapes.strides(outS), kStr = Shapes.strides(k)
    let outCount = Tensor.elementCount(outS), kCount = Tensor.elementCount(k), inCount = Tensor.elementCount(inS)
    var y = [Float](repeating: 0, count: n * m * outCount)
    for img in 0..<n { for oc in 0..<m { for o in 0..<outCount {
        let grp = oc / mg
        var acc: Float = bv?[oc] ?? 0
        for ic in 0..<cg { for kk in 0..<kCount {
            var off = 0, inside = true
            for dim in 0..<r {
                let oi = (o / outStr[dim]) % outS[dim], ki = (kk / kStr[dim]) % k[dim]
                let ii = oi * s[dim] - p[dim] + ki * d[dim]
                if ii < 0 || ii >= inS[dim] { inside = false }
                off += ii * inStr[dim]
            }
            if inside { acc += xv[(img * c + grp * cg + ic) * inCount + off] * wv[(oc * cg + ic) * kCount + kk] }
        } }
        y[(img * m + oc) * outCount + o] = acc
    } } }
    return Tensor(shape: [n, m] + outS, floats: y)
}

func randomTensor(_ shape: [Int], seed: inout UInt64) -> Tensor {
    let v = (0..<Tensor.elementCount(shape)).map { _ -> Float in
        seed = seed &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int(seed >> 40) % 2001 - 1000) / 1000
    }
    return Tensor(shape: shape, floats: v)
}

@Test func convAutoPadSameUpperAndLower() throws {
    let x = Tensor(shape: [1, 1, 4], floats: [1, 2, 3, 4])
    let w = Tensor(shape: [1, 1, 2], floats: [1, 1])
    // Total padding 1: SAME_UPPER puts it at the end, SAME_LOWER at the start.
    let upper = try runNode("Conv", [x, w], attributes: [.string("auto_pad", "SAME_UPPER")])[0]
    let lower = try runNode("Conv", [x, w], attributes: [.string("auto_pad", "SAME_LOWER")])[0]
    #expect(upper.floats() == [3, 5, 7, 4])
    #expect(lower.floats() == [1, 3, 5, 7])
}

@Test(arguments: [
    // (spatial input, channels, out channels, group, kernel, stride, pad, dilation)
    ([9, 11], 4, 4, 4, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),  // depthwise
    ([9, 11], 6, 6, 6, [5, 3], [2, 2], [2, 1, 1, 0], [1, 2]),  // depthwise, strided, dilated, asymmetric
    ([70, 37], 37, 37, 37, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),  // depthwise, AVX-512 row variant (stride 1, 37 columns)
    ([20, 31], 5, 5, 5, [5, 5], [1, 1], [2, 0, 1, 3], [1, 1]),  // depthwise, row variant, 5×5, asymmetric pads
    ([29, 33], 6, 6, 6, [3, 3], [2, 2], [0, 1, 1, 0], [1, 1]),  // depthwise, row variant, stride 2, asymmetric pads
    ([31, 70], 3, 3, 3, [5, 5], [2, 2], [0, 3, 4, 1], [1, 1]),  // depthwise, row variant, stride 2, 5×5, 3 column blocks
    ([300, 9], 37, 37, 37, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),  // depthwise, 16-channel runs with a tail, row bands
    ([23, 40], 20, 20, 20, [5, 5], [3, 2], [2, 2, 2, 2], [1, 1]),  // depthwise, stride 3 x 2
    ([7, 7], 33, 33, 33, [3, 3], [1, 1], [2, 0, 0, 2], [2, 2]),  // depthwise, small planes, dilated
    ([7, 5], 8, 6, 1, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1]),  // pointwise
    ([7, 5], 4, 6, 2, [3, 2], [2, 1], [1, 0, 0, 1], [1, 1]),  // grouped im2col
    ([6, 4, 5], 2, 3, 1, [2, 3, 2], [1, 2, 1], [1, 0, 1, 0, 1, 1], [2, 1, 1]),  // 3-D
    ([13], 3, 2, 1, [4], [3], [2, 1], [2]),  // 1-D
])
func convMatchesDirectSum(_ spatial: [Int], _ c: Int, _ m: Int, _ group: Int, _ k: [Int], _ s: [Int], _ p: [Int], _ d: [Int]) throws {
    var seed: UInt64 = 7
    let x = randomTensor([2, c] + spatial, seed: &seed)
    let w = randomTensor([m, c / group] + k, seed: &seed)
    let b = randomTensor([m], seed: &seed)
    let got = try runNode("Conv", [x, w, b], attributes: [.int("group", group), .ints("strides", s), .ints("pads", p), .ints("dilations", d)])[0]
    let want = naiveConv(x, w, b, strides: s, pads: p, dilations: d, group: group)
    #expect(got.shape == want.shape)
    let err = zip(got.floats(), want.floats()).map { abs($0 - $1) }.max() ?? 0
    #expect(err < 1e-4)
}

@Test func convTransposeIsTheAdjointOfConv() throws {
    // For y = Conv(x, W), <y, u> == <x, ConvTranspose(u, W)> with matching strides and pads.
    var seed: UInt64 = 3
    let x = randomTensor([1, 2, 7, 6], seed: &seed)
    let w = randomTensor([3, 2, 3, 2], seed: &seed)
    let attrs: [Attribute] = [.ints("strides", [2, 1]), .ints("pads", [1, 0, 1, 1])]
    let y = try runNode("Conv", [x, w], attributes: attrs)[0]
    let u = randomTensor(y.shape, seed: &seed)
    let xt = try runNode("ConvTranspose", [u, w], attributes: attrs + [.ints("output_padding", [0, 0])])[0]
    #expect(xt.shape == x.shape)
    let lhs = zip(y.floats(), u.floats()).map { $0 * $1 }.reduce(0, +)
    let rhs = zip(x.floats(), xt.floats()).map { $0 * $1 }.reduce(0, +)
    #expect(abs(lhs - rhs) < 1e-3)
}
