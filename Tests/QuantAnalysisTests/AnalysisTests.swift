import Foundation
import QuantCore
import QuantIR
import Testing

import QuantAnalysis

@Suite struct ErrorMetricsTests {
    @Test func handComputedMetrics() {
        // r = [1, 2, 0, -1], t = [1, 1, 1, -1]: e = [0, -1, 1, 0]
        var acc = ErrorAccumulator()
        acc.add(reference: Tensor(shape: [4], floats: [1, 2, 0, -1]), test: Tensor(shape: [4], floats: [1, 1, 1, -1]))
        let m = acc.metrics
        #expect(m.elements == 4)
        #expect(abs(m.snr - 2.0 / 6.0) < 1e-12)  // Σe² / Σr²
        #expect(abs(m.cosine - 4.0 / (6.0 * 4.0).squareRoot()) < 1e-12)  // Σrt = 1 + 2 + 0 + 1, Σt² = 4
        #expect(abs(m.mse - 0.5) < 1e-12)
        #expect(abs(m.mae - 0.5) < 1e-12)
        #expect(abs(m.relativeEuclidean - (2.0 / 6.0).squareRoot()) < 1e-12)
        #expect(m.maxAbsError == 1)
        #expect(m.top1Agreement == nil)
    }

    @Test func maskIoUOfProbabilityMaps() {
        // [1, 1, 2, 4] maps: above 0.5 in the float map at 0, 1, 2, 5; in the quantized one at
        // 1, 2, 5, 6 -> intersection 3, union 5. A background that moves from 0.01 to 0.3 costs
        // SNR but no mask pixel.
        let r: [Float] = [0.9, 0.8, 0.7, 0.01, 0.01, 0.6, 0.4, 0.01]
        let t: [Float] = [0.5, 0.9, 0.6, 0.3, 0.3, 0.7, 0.55, 0.3]
        let reference = Tensor(shape: [1, 1, 2, 4], floats: r)
        #expect(ErrorAccumulator.looksLikeProbabilityMap(reference))
        #expect(!ErrorAccumulator.looksLikeProbabilityMap(Tensor(shape: [1, 1, 2, 4], floats: r.map { $0 * 2 })))
        #expect(!ErrorAccumulator.looksLikeProbabilityMap(Tensor(shape: [2, 4], floats: r)))
        var acc = ErrorAccumulator(probabilityMap: true)
        acc.add(reference: reference, test: Tensor(shape: [1, 1, 2, 4], floats: t))
        var half = ErrorAccumulator(probabilityMap: true), rest = ErrorAccumulator(probabilityMap: true)
        half.add(reference: Tensor(shape: [1, 1, 1, 4], floats: Array(r[..<4])), test: Tensor(shape: [1, 1, 1, 4], floats: Array(t[..<4])))
        rest.add(reference: Tensor(shape: [1, 1, 1, 4], floats: Array(r[4...])), test: Tensor(shape: [1, 1, 1, 4], floats: Array(t[4...])))
        half.merge(rest)
        #expect(acc.metrics.maskIoU == 0.6 && half.metrics.maskIoU == 0.6)
        #expect(ErrorAccumulator().metrics.maskIoU == nil)
    }

    @Test func batchesAccumulateLikeOnePass() {
        var rng = SystemRandomNumberGenerator()
        let r = (0..<64).map { _ in Float.random(in: -2...2, using: &rng) }
        let t = r.map { $0 + Float.random(in: -0.1...0.1, using: &rng) }
        var one = ErrorAccumulator(), two = ErrorAccumulator()
        one.add(reference: Tensor(shape: [64], floats: r), test: Tensor(shape: [64], floats: t))
        two.add(reference: Tensor(shape: [32], floats: Array(r[..<32])), test: Tensor(shape: [32], floats: Array(t[..<32])))
        var b = ErrorAccumulator()
        b.add(reference: Tensor(shape: [32], floats: Array(r[32...])), test: Tensor(shape: [32], floats: Array(t[32...])))
        two.merge(b)
        #expect(abs(one.metrics.snr - two.metrics.snr) < 1e-12)
        #expect(abs(one.metrics.cosine - two.metrics.cosine) < 1e-12)
        #expect(one.metrics.maxAbsError == two.metrics.maxAbsError)
    }

    @Test func top1AgreementOfClassScores() {
        var acc = ErrorAccumulator(classScores: true)
        // rows: argmax 2 vs 2 (agree), 0 vs 1 (differ)
        acc.add(reference: Tensor(shape: [2, 3], floats: [0, 1, 5, 3, 1, 0]), test: Tensor(shape: [2, 3], floats: [0, 1, 4, 1, 2, 0]))
        #expect(acc.metrics.top1Agreement == 0.5)
    }

    @Test func perItemSNRShowsAnErrorOnQuietItems() {
        // Item 0 loud (signal 100² · 4) and item 1 quiet (signal 0.1² · 4), the same error 0.05
        // per element: overall SNR ≈ 2.5e-7, the quiet item's 0.25.
        var acc = ErrorAccumulator()
        let r: [Float] = [100, -100, 100, -100, 0.1, -0.1, 0.1, -0.1]
        acc.add(reference: Tensor(shape: [2, 4], floats: r), test: Tensor(shape: [2, 4], floats: r.map { $0 + 0.05 }), items: 2)
        var more = ErrorAccumulator()
        more.add(reference: Tensor(shape: [1, 4], floats: Array(r[4...])), test: Tensor(shape: [1, 4], floats: r[4...].map { $0 + 0.05 }), items: 1)
        acc.merge(more)
        let m = acc.metrics
        #expect(m.snr < 1e-5)
        #expect(acc.itemSNRs.count == 3)
        #expect(abs(m.medianItemSNR! - 0.25) < 1e-6 && abs(m.worstItemSNR! - 0.25) < 1e-6)
        // A first axis that is not the batch: one item.
        var whole = ErrorAccumulator()
        whole.add(reference: Tensor(shape: [2, 4], floats: r), test: Tensor(shape: [2, 4], floats: r), items: 3)
        #expect(whole.itemSNRs == [0] && whole.metrics.medianItemSNR == nil)
    }

    @Test func classScoresAreRank2Or3() {
        #expect(ErrorAccumulator.looksLikeClassScores([8, 1000]) && ErrorAccumulator.looksLikeClassScores([8, 40, 6625]))
        #expect(!ErrorAccumulator.looksLikeClassScores([8, 1, 320, 320]) && !ErrorAccumulator.looksLikeClassScores([8, 1]))
        #expect(!ErrorAccumulator.looksLikeClassScores([1000]))
    }

    @Test func sumsOverManyBlocksAndThreadsMatchAPlainLoop() {
        // 3 items of 70,001 elements (two blocks each, and a tail shorter than a vector): the
        // vectorized, blocked sums against a plain Double loop; any thread count gives the same.
        let per = 70_001, items = 3
        let r = (0..<(per * items)).map { Float(sin(Double($0) * 0.37)) * 3 }
        let t = r.enumerated().map { $0.element + Float(cos(Double($0.offset) * 1.3)) * 0.01 }
        var ref = (s: 0.0, e: 0.0, d: 0.0, p: 0.0, a: 0.0, m: 0.0)
        for (rv, tv) in zip(r.map(Double.init), t.map(Double.init)) {
            ref.s += rv * rv; ref.e += (tv - rv) * (tv - rv); ref.d += rv * tv; ref.p += tv * tv; ref.a += abs(tv - rv); ref.m = max(ref.m, abs(tv - rv))
        }
        var one = ErrorAccumulator(), four = ErrorAccumulator()
        one.add(reference: Tensor(shape: [items, per], floats: r), test: Tensor(shape: [items, per], floats: t), items: items, threads: 1)
        four.add(reference: Tensor(shape: [items, per], floats: r), test: Tensor(shape: [items, per], floats: t), items: items, threads: 4)
        #expect(one.metrics == four.metrics && one.itemSNRs == four.itemSNRs)
        let m = one.metrics, n = Double(per * items)
        #expect(abs(m.snr - ref.e / ref.s) < 1e-12 * m.snr.magnitude + 1e-15)
        #expect(abs(m.cosine - ref.d / (ref.s * ref.p).squareRoot()) < 1e-12)
        #expect(abs(m.mae - ref.a / n) < 1e-12 * ref.a / n && m.maxAbsError == ref.m)
        #expect(one.itemSNRs.count == items)
        // A NaN anywhere makes the max error NaN, as before.
        var bad = t
        bad[per + 5] = .nan
        var nan = ErrorAccumulator()
        nan.add(reference: Tensor(shape: [items, per], floats: r), test: Tensor(shape: [items, per], floats: bad), items: items, threads: 2)
        #expect(nan.metrics.maxAbsError.isNaN && nan.itemSNRs[1].isNaN && !nan.itemSNRs[0].isNaN)
    }

    @Test func zeroSignal() {
        var acc = ErrorAccumulator()
        acc.add(reference: Tensor(shape: [2], floats: [0, 0]), test: Tensor(shape: [2], floats: [0, 0]))
        #expect(acc.metrics.snr == 0 && acc.metrics.cosine == 1)
        acc.add(reference: Tensor(shape: [1], floats: [0]), test: Tensor(shape: [1], floats: [1]))
        #expect(acc.metrics.snr == .infinity)
    }
}

/// x ─ Q ─ DQ ─ Conv(W via DQ) ─ Relu ─ Q ─ DQ ─ y
func tinyQDQModel() -> Model {
    let scalar = { (v: Float) in Tensor(shape: [], floats: [v]) }
    let inits = [
        Initializer(name: "xs", tensor: scalar(0.1)), Initializer(name: "xz", tensor: Tensor(shape: [], values: [UInt8(128)])),
        Initializer(name: "wq", tensor: Tensor(shape: [2, 1, 1, 1], values: [Int8(10), Int8(-20)])),
        Initializer(name: "ws", tensor: Tensor(shape: [2], floats: [0.1, 0.05])), Initializer(name: "wz", tensor: Tensor(shape: [2], values: [Int8(0), Int8(0)])),
        Initializer(name: "ys", tensor: scalar(0.02)), Initializer(name: "yz", tensor: Tensor(shape: [], values: [UInt8(0)])),
    ]
    let nodes = [
        Node(name: "qx", opType: "QuantizeLinear", inputs: ["x", "xs", "xz"], outputs: ["x_q"]),
        Node(name: "dqx", opType: "DequantizeLinear", inputs: ["x_q", "xs", "xz"], outputs: ["x_dq"]),
        Node(name: "dqw", opType: "DequantizeLinear", inputs: ["wq", "ws", "wz"], outputs: ["w"], attributes: [.int("axis", 0)]),
        Node(name: "conv", opType: "Conv", inputs: ["x_dq", "w"], outputs: ["c"]),
        Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["r"]),
        Node(name: "qr", opType: "QuantizeLinear", inputs: ["r", "ys", "yz"], outputs: ["r_q"]),
        Node(name: "dqr", opType: "DequantizeLinear", inputs: ["r_q", "ys", "yz"], outputs: ["y"]),
    ]
    let g = Graph(name: "tiny", nodes: nodes, inputs: [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(1), .value(1), .value(2), .value(2)]))],
                  outputs: [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))], initializers: inits)
    return Model(graph: g, opsets: ["": 13])
}

@Suite struct QDQLayoutTests {
    @Test func findsActivationsWeightsAndLayers() throws {
        let layout = try QDQLayout(model: tinyQDQModel())
        #expect(Set(layout.activations.keys) == ["x", "r"])
        #expect(layout.dequantizedActivations == ["x_dq": "x", "y": "r"])
        #expect(layout.weightTensors == 1)
        #expect(layout.layers.count == 1)
        let conv = layout.layers[0]
        // Conv → Relu → Q: the error is measured on the Relu output, which the next op reads.
        #expect(conv.node == "conv" && conv.tensor == "r" && conv.activationInputs == ["x"])
        #expect(conv.weightPerChannel == true && conv.weightType == "int8")
        let x = layout.activations["x"]!
        #expect(x.dtype == .uint8 && x.qmin == 0 && x.qmax == 255)
        #expect(abs(x.clipRange.lo + 12.8) < 1e-5 && abs(x.clipRange.hi - 12.7) < 1e-5)
    }

    @Test func fakeQuantizeRoundsHalfToEvenAndSaturates() throws {
        let x = try QDQLayout(model: tinyQDQModel()).activations["x"]!
        // 0.05/0.1 = 0.5 -> 0; 0.15/0.1 = 1.5 -> 2; 100 saturates at 127·0.1; -100 at -128·0.1
        let y = x.fakeQuantize(Tensor(shape: [4], floats: [0.05, 0.15, 100, -100])).floats()
        #expect(abs(y[0]) < 1e-6)
        #expect(abs(y[1] - 0.2) < 1e-6)
        #expect(abs(y[2] - 12.7) < 1e-5 && abs(y[3] + 12.8) < 1e-5)
    }

    @Test func fakeQuantizeVectorAndThreadedPathsEqualTheDefinition() {
        // Per tensor and per channel (axis 1 of [4, 5, 129, 65]: blocks of 8,385 values, not a
        // multiple of the 8 vector lanes; enough values for two threads), with values on
        // rounding ties and beyond the range.
        var state: UInt64 = 7
        let values: [Float] = (0..<(4 * 5 * 129 * 65)).map { i in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return i % 11 == 0 ? Float(i % 7) * 0.05 + 0.025 : Float(Int(state >> 40) % 4001 - 2000) / 100
        }
        let x = Tensor(shape: [4, 5, 129, 65], floats: values)
        for (scales, zps, axis) in [([Float(0.05)], [Float(128)], nil as Int?),
                                    ([0.05, 0.1, 0.02, 0.2, 0.07], [128, 100, 0, 255, 3], 1)] {
            let q = ActivationQuantization(tensor: "x", scales: scales, zeroPoints: zps, axis: axis, dtype: .uint8, qmin: 0, qmax: 255)
            let expected = values.enumerated().map { i, v -> Float in
                let c = scales.count == 1 ? 0 : (i / 8385) % 5
                let level = min(max((v / scales[c]).rounded(.toNearestOrEven) + zps[c], 0), 255)
                return (level - zps[c]) * scales[c]
            }
            #expect(q.fakeQuantize(x).floats() == expected)
            #expect(q.fakeQuantize(x, threads: 2).floats() == expected)
        }
    }
}

@Suite struct AnalyzerTests {
    @Test func aBatchOverTheMemoryBudgetRunsInPartsWithTheSameResults() throws {
        // The tiny models with a free batch dimension; 5 items, once whole and once one item per
        // pass (a 1-byte budget): the same sums, per-item SNRs and joined outputs.
        func batched(_ m: Model) -> Model {
            m.graph.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.param("N"), .value(1), .value(2), .value(2)]))]
            return m
        }
        let q = batched(tinyQDQModel())
        let f = batched(Model(graph: Graph(name: "f", nodes: [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"]),
                                                              Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["y"])],
                                           inputs: q.graph.inputs, outputs: [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))],
                                           initializers: [Initializer(name: "W", tensor: Tensor(shape: [2, 1, 1, 1], floats: [1, -1]))]),
                              opsets: ["": 13]))
        let x = Tensor(shape: [5, 1, 2, 2], floats: (0..<20).map { Float(($0 * 37) % 23) / 11 - 1 })
        let whole = try QuantAnalyzer(floatModel: f, quantizedModel: q, options: AnalysisOptions(threads: 1), collectHistograms: true)
        try whole.add(["x": x])
        let parts = try QuantAnalyzer(floatModel: f, quantizedModel: q, options: AnalysisOptions(threads: 1, recordBudget: 1), collectHistograms: true)
        try parts.add(["x": x])
        #expect(whole.itemsPerPass != nil && whole.itemsPerPass! >= 5)
        #expect(parts.itemsPerPass == 1)
        #expect(parts.samples == 5 && parts.batches == 1)
        for (a, b) in [(whole.metrics.graphwise["r"]!, parts.metrics.graphwise["r"]!), (whole.metrics.layerwise["r"]!, parts.metrics.layerwise["r"]!),
                       (whole.metrics.outputs["y"]!, parts.metrics.outputs["y"]!)] {
            #expect(a.elements == b.elements && a.elements == 40)
            #expect(abs(a.snr - b.snr) < 1e-12 && abs(a.mse - b.mse) < 1e-12 && a.maxAbsError == b.maxAbsError)
            #expect(a.medianItemSNR != nil && a.medianItemSNR == b.medianItemSNR)
        }
        #expect(parts.lastOutputs.quantized["y"]!.shape == [5, 2, 2, 2])
        #expect(parts.lastOutputs.quantized["y"]!.bitwiseEqual(whole.lastOutputs.quantized["y"]!))
        #expect(parts.lastOutputs.float["y"]!.bitwiseEqual(whole.lastOutputs.float["y"]!))
        #expect(parts.observedStatistics?["x"]?.histogram == whole.observedStatistics?["x"]?.histogram)
    }

    @Test func analyzerAgreesWithHandComputedError() throws {
        // Float model: the same Conv(W = [1, -1]) → Relu without Q/DQ.
        let q = tinyQDQModel()
        let f = Model(graph: Graph(name: "f", nodes: [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"]),
                                                      Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["y"])],
                                   inputs: q.graph.inputs, outputs: [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))],
                                   initializers: [Initializer(name: "W", tensor: Tensor(shape: [2, 1, 1, 1], floats: [1, -1]))]),
                      opsets: ["": 13])
        let a = try QuantAnalyzer(floatModel: f, quantizedModel: q, options: AnalysisOptions(threads: 1), collectHistograms: true)
        let x: [Float] = [0.33, -0.5, 1.04, 0.0]
        try a.add(["x": Tensor(shape: [1, 1, 2, 2], floats: x)])
        // Float: relu([x, -x]); QDQ: x -> fq(0.1) -> conv(W=[1,-1]) -> relu -> fq(0.02, zp 0).
        let fx = x.map { (($0 / 0.1).rounded(.toNearestOrEven)) * 0.1 }
        let ref = x.map { max($0, 0) } + x.map { max(-$0, 0) }
        let test = (fx.map { max($0, 0) } + fx.map { max(-$0, 0) }).map { (min(max(($0 / 0.02).rounded(.toNearestOrEven), 0), 255)) * 0.02 }
        var acc = ErrorAccumulator()
        acc.add(reference: Tensor(shape: [8], floats: ref), test: Tensor(shape: [8], floats: test))
        let m = a.metrics
        #expect(abs(m.graphwise["r"]!.snr - acc.metrics.snr) < 1e-6)
        #expect(abs(m.layerwise["r"]!.snr - acc.metrics.snr) < 1e-6)  // the only op: layerwise = graphwise
        #expect(abs(m.outputs["y"]!.snr - acc.metrics.snr) < 1e-6)
        let report = AnalysisReport(analyzer: a, floatModel: f, quantizedModel: q, floatName: "f.onnx", quantizedName: "q.onnx")
        #expect(report.layers.count == 1 && report.histograms.count == 2)
        let md = report.markdown()
        #expect(md.contains("| 1 |") && md.contains("`conv`"))
        let back = try AnalysisReport.decode(report.json())
        #expect(back.layers[0].graphwise == report.layers[0].graphwise)
    }
}
