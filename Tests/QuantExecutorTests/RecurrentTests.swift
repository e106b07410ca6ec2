import Foundation
import QuantCore
import QuantExecutor
import QuantIR
import Testing

private func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

private func close(_ a: [Float], _ b: [Float], _ tol: Float = 1e-5) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
}

@Test func rnnFollowsTheTanhRecurrence() throws {
    // hidden 1, input 1, two steps: h1 = tanh(0.5·1 + 0.1), h2 = tanh(0.5·2 + 1.0·h1 + 0.1)
    let node = Node(name: "rnn", opType: "RNN", inputs: ["X", "W", "R", "B"], outputs: ["Y", "Y_h"], attributes: [.int("hidden_size", 1)])
    let out = try runNode(node, [("X", Tensor(shape: [2, 1, 1], floats: [1, 2])), ("W", Tensor(shape: [1, 1, 1], floats: [0.5])),
                                 ("R", Tensor(shape: [1, 1, 1], floats: [1])), ("B", Tensor(shape: [1, 2], floats: [0.04, 0.06]))], opset: 14)
    let h1 = tanh(Float(0.6)), h2 = tanh(1.1 + h1)
    #expect(out[0].shape == [2, 1, 1, 1] && close(out[0].floats(), [h1, h2]))
    #expect(close(out[1].floats(), [h2]))
}

/// One LSTM step on scalars (gates i, o, f, c; peepholes i, o, f).
private func lstmStep(x: Float, h: Float, c: Float, w: [Float], r: [Float], b: [Float], p: [Float]) -> (Float, Float) {
    let i = sigmoid(w[0] * x + r[0] * h + b[0] + p[0] * c)
    let f = sigmoid(w[2] * x + r[2] * h + b[2] + p[2] * c)
    let g = tanh(w[3] * x + r[3] * h + b[3])
    let cn = f * c + i * g
    let o = sigmoid(w[1] * x + r[1] * h + b[1] + p[1] * cn)
    return (o * tanh(cn), cn)
}

@Test func lstmWithPeepholesInitialStateReverseAndSequenceLengths() throws {
    // hidden 1, input 1, 3 steps, batch 2 with lengths [3, 1], direction reverse.
    let w: [Float] = [0.3, -0.2, 0.5, 0.7], r: [Float] = [0.1, 0.4, -0.3, 0.2], bw: [Float] = [0.1, 0, -0.1, 0.05], p: [Float] = [0.2, -0.1, 0.3]
    let x: [Float] = [1, -1, 0.5, 2, -0.5, 3]  // [seq 3, batch 2, 1]
    let node = Node(name: "lstm", opType: "LSTM", inputs: ["X", "W", "R", "B", "lens", "h0", "c0", "P"], outputs: ["Y", "Y_h", "Y_c"],
                    attributes: [.int("hidden_size", 1), .string("direction", "reverse")])
    let out = try runNode(node, [
        ("X", Tensor(shape: [3, 2, 1], floats: x)), ("W", Tensor(shape: [1, 4, 1], floats: w)), ("R", Tensor(shape: [1, 4, 1], floats: r)),
        ("B", Tensor(shape: [1, 8], floats: bw + [0, 0, 0, 0])), ("lens", Tensor(shape: [2], values: [Int32(3), 1])),
        ("h0", Tensor(shape: [1, 2, 1], floats: [0.5, -0.5])), ("c0", Tensor(shape: [1, 2, 1], floats: [0.25, 1])),
        ("P", Tensor(shape: [1, 3], floats: p)),
    ], opset: 14)
    // Batch 0 runs t = 2, 1, 0; batch 1 only t = 0; Y is zero where a sequence has ended.
    var (h, c) = (Float(0.5), Float(0.25))
    var y0 = [Float](repeating: 0, count: 3)
    for t in [2, 1, 0] {
        (h, c) = lstmStep(x: x[t * 2], h: h, c: c, w: w, r: r, b: bw, p: p)
        y0[t] = h
    }
    let (h1, c1) = lstmStep(x: x[1], h: -0.5, c: 1, w: w, r: r, b: bw, p: p)
    #expect(out[0].shape == [3, 1, 2, 1])
    #expect(close(out[0].floats(), [y0[0], h1, y0[1], 0, y0[2], 0]))
    #expect(close(out[1].floats(), [h, h1]) && close(out[2].floats(), [c, c1]))
}

@Test func gruLinearBeforeResetBothWays() throws {
    // hidden 1, one step from h0 = 0.5: z, r gates, candidate with and without linear_before_reset.
    let w: [Float] = [0.3, -0.6, 0.9], r: [Float] = [0.2, 0.5, -0.7], wb: [Float] = [0.1, 0.2, 0.3], rb: [Float] = [-0.1, 0.05, 0.4]
    let x: Float = 1.5, h: Float = 0.5
    let z = sigmoid(w[0] * x + r[0] * h + wb[0] + rb[0]), rr = sigmoid(w[1] * x + r[1] * h + wb[1] + rb[1])
    let expected: [Float] = [
        tanh(w[2] * x + r[2] * (rr * h) + rb[2] + wb[2]),  // linear_before_reset = 0
        tanh(w[2] * x + rr * (r[2] * h + rb[2]) + wb[2]),  // linear_before_reset = 1
    ].map { (1 - z) * $0 + z * h }
    for lbr in [0, 1] {
        let node = Node(name: "gru", opType: "GRU", inputs: ["X", "W", "R", "B", "", "h0"], outputs: ["", "Y_h"],
                        attributes: [.int("hidden_size", 1), .int("linear_before_reset", lbr)])
        let out = try runNode(node, [
            ("X", Tensor(shape: [1, 1, 1], floats: [x])), ("W", Tensor(shape: [1, 3, 1], floats: w)), ("R", Tensor(shape: [1, 3, 1], floats: r)),
            ("B", Tensor(shape: [1, 6], floats: wb + rb)), ("h0", Tensor(shape: [1, 1, 1], floats: [h])),
        ], opset: 14)
        #expect(close(out[0].floats(), [expected[lbr]]), "linear_before_reset \(lbr)")
    }
}

@Test func bidirectionalLayoutOneMatchesLayoutZero() throws {
    // The same RNN in both layouts: Y [S, D, B, H] vs [B, S, D, H].
    let x: [Float] = (0..<12).map { Float($0) * 0.1 - 0.5 }  // S 3, B 2, I 2
    let w: [Float] = (0..<8).map { Float($0) * 0.05 - 0.2 }  // D 2, H 2, I 2
    let r: [Float] = (0..<8).map { 0.3 - Float($0) * 0.07 }
    func run(_ layout: Int, _ xs: [Float], _ shape: [Int]) throws -> [Tensor] {
        let node = Node(name: "rnn", opType: "RNN", inputs: ["X", "W", "R"], outputs: ["Y", "Y_h"],
                        attributes: [.int("hidden_size", 2), .string("direction", "bidirectional"), .int("layout", layout)])
        return try runNode(node, [("X", Tensor(shape: shape, floats: xs)), ("W", Tensor(shape: [2, 2, 2], floats: w)), ("R", Tensor(shape: [2, 2, 2], floats: r))], opset: 14)
    }
    let a = try run(0, x, [3, 2, 2])
    // Transpose X [S, B, I] -> [B, S, I].
    var xt = [Float](repeating: 0, count: 12)
    for s in 0..<3 { for b in 0..<2 { for i in 0..<2 { xt[(b * 3 + s) * 2 + i] = x[(s * 2 + b) * 2 + i] } } }
    let bres = try run(1, xt, [2, 3, 2])
    #expect(bres[0].shape == [2, 3, 2, 2] && bres[1].shape == [2, 2, 2])
    let ya = a[0].floats(), yb = bres[0].floats()
    for s in 0..<3 { for d in 0..<2 { for b in 0..<2 { for h in 0..<2 {
        #expect(abs(ya[((s * 2 + d) * 2 + b) * 2 + h] - yb[((b * 3 + s) * 2 + d) * 2 + h]) < 1e-6)
    } } } }
}
