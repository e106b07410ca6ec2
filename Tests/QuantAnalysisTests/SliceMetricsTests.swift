import Foundation
import QuantCore
import QuantIR
import Testing

import QuantAnalysis

/// Output slices: channels of far different magnitudes are measured apart, so a broken small
/// part of an output (a YOLO head's scores beside its pixel boxes) cannot hide in the whole.
@Suite struct SliceMetricsTests {
    /// [1, 8, 16]: channels 0-3 boxes in 0-320, 4-7 scores in 0-1.
    static func head(scores: (Int, Float) -> Float) -> (Tensor, Tensor) {
        var r: [Float] = [], t: [Float] = []
        for c in 0..<8 {
            for i in 0..<16 {
                let v: Float = c < 4 ? Float(20 * i + c) : Float((i * 7 + c) % 10) / 10 + 0.05
                r.append(v)
                t.append(c < 4 ? v + 0.5 : scores(i, v))
            }
        }
        return (Tensor(shape: [1, 8, 16], floats: r), Tensor(shape: [1, 8, 16], floats: t))
    }

    @Test func zeroedScoresShowInTheWorstSliceNotInTheWholeOutput() throws {
        let (r, t) = Self.head { _, _ in 0 }
        var acc = ErrorAccumulator(sliced: true)
        acc.add(reference: r, test: t)
        let m = acc.metrics
        #expect(m.cosine > 0.999 && m.snr < 1e-3)  // the boxes dominate the whole tensor
        let w = try #require(m.worstSlice)
        #expect(w.axis == 1 && w.channels == "4-7" && w.count == 4)
        #expect(w.snr == 1 && w.cosine == 0)  // every score lost: Σ(t−r)² = Σr², Σrt = 0
        #expect(abs(w.range - 0.95) < 1e-6)
        #expect(m.bad(snrWarning: 0.1, cosineWarning: 0.99))
        #expect(m.slices?.count == 2)
        let boxes = try #require(m.slices?.first { $0.channels == "0-3" })
        #expect(boxes.cosine > 0.999)
    }

    @Test func accurateScoresPass() throws {
        let (r, t) = Self.head { _, v in v + 0.002 }
        var acc = ErrorAccumulator(sliced: true)
        acc.add(reference: r, test: t)
        let m = acc.metrics
        #expect(try #require(m.worstSlice).cosine > 0.999)
        #expect(!m.bad(snrWarning: 0.1, cosineWarning: 0.99))
    }

    @Test func channelsOfOneMagnitudeAreNotSplit() {
        // Ranges 1 to 50 (within the factor 100): one group, no slices.
        var r: [Float] = []
        for c in 0..<6 { for i in 0..<10 { r.append(Float(i + 1) * Float(c * 10 + 1) / 10) } }
        var acc = ErrorAccumulator(sliced: true)
        acc.add(reference: Tensor(shape: [1, 6, 10], floats: r), test: Tensor(shape: [1, 6, 10], floats: r.map { $0 * 1.01 }))
        #expect(acc.metrics.slices == nil && acc.metrics.worstSlice == nil)
    }

    @Test func batchesAndMergesAddUpLikeOnePass() throws {
        let (r, t) = Self.head { i, v in i % 2 == 0 ? 0 : v }
        var one = ErrorAccumulator(sliced: true)
        one.add(reference: r, test: t)
        // The same data as two items, added in two accumulators and merged.
        let rv = r.floats(), tv = t.floats()
        func part(_ k: Int) -> (Tensor, Tensor) {
            // Columns 8k..<8k+8 of every channel.
            let idx = (0..<8).flatMap { c in (0..<8).map { c * 16 + 8 * k + $0 } }
            return (Tensor(shape: [1, 8, 8], floats: idx.map { rv[$0] }), Tensor(shape: [1, 8, 8], floats: idx.map { tv[$0] }))
        }
        var a = ErrorAccumulator(sliced: true), b = ErrorAccumulator(sliced: true)
        let (r0, t0) = part(0), (r1, t1) = part(1)
        a.add(reference: r0, test: t0)
        b.add(reference: r1, test: t1)
        a.merge(b)
        let x = try #require(one.metrics.worstSlice), y = try #require(a.metrics.worstSlice)
        #expect(x.channels == y.channels && abs(x.snr - y.snr) < 1e-12 && abs(x.cosine - y.cosine) < 1e-12)
    }

    @Test func anAxisWhoseLengthChangesIsDropped() {
        // [1, T, 2] with T 3 then 4 (a sequence length): axis 1 is dropped, the last axis kept.
        var acc = ErrorAccumulator(sliced: true)
        acc.add(reference: Tensor(shape: [1, 3, 2], floats: [300, 1, 200, 0.5, 100, 0.2]), test: Tensor(shape: [1, 3, 2], floats: [300, 0, 200, 0, 100, 0]))
        acc.add(reference: Tensor(shape: [1, 4, 2], floats: [300, 1, 200, 0.5, 100, 0.2, 50, 0.1]), test: Tensor(shape: [1, 4, 2], floats: [300, 0, 200, 0, 100, 0, 50, 0]))
        let s = acc.metrics.slices ?? []
        #expect(!s.isEmpty && s.allSatisfy { $0.axis == 2 })
        #expect(acc.metrics.worstSlice?.channels == "1" && acc.metrics.worstSlice?.snr == 1)
    }

    @Test func findingsNameTheWorstSliceAndAChangedTopClass() throws {
        let (r, t) = Self.head { _, _ in 0 }
        var acc = ErrorAccumulator(sliced: true)
        acc.add(reference: r, test: t)
        let sliceFinding = try #require(AnalysisReport.outputFinding(.init(name: "y", metrics: acc.metrics), snrWarning: 0.1, cosineWarning: 0.99))
        #expect(sliceFinding.hasPrefix("QK6006 error: output 'y' is far from float: axis 1 channels 4-7"))
        // Scores with a small SNR whose top class moves on 1 row of 4: top-1 agreement 0.75.
        var cls = ErrorAccumulator(classScores: true)
        cls.add(reference: Tensor(shape: [4, 3], floats: [5, 1, 0, 0, 5, 1, 1, 0, 5, 2, 2.05, 0]),
                test: Tensor(shape: [4, 3], floats: [5, 1, 0, 0, 5, 1, 1, 0, 5, 2.05, 2, 0]))
        let m = cls.metrics
        #expect(m.snr < 0.001 && m.top1Agreement == 0.75)
        let f = try #require(AnalysisReport.outputFinding(.init(name: "logits", metrics: m), snrWarning: 0.1, cosineWarning: 0.99))
        #expect(f.contains("top-1 agreement 0.75 (under 0.99)") && !f.contains("SNR"))
        var same = ErrorAccumulator(classScores: true)
        same.add(reference: Tensor(shape: [2, 3], floats: [5, 1, 0, 0, 5, 1]), test: Tensor(shape: [2, 3], floats: [5, 1.01, 0, 0, 5, 1]))
        #expect(AnalysisReport.outputFinding(.init(name: "logits", metrics: same.metrics), snrWarning: 0.1, cosineWarning: 0.99) == nil)
    }

    @Test func channelListsAreCompact() {
        #expect(SliceSums(shape: [1, 1])?.axes.map(\.axis) == nil)  // one channel: nothing to split
        #expect(SliceSums(shape: [1, 84, 8400])?.axes.map(\.axis) == [1])
        #expect(SliceSums(shape: [1, 8400, 85])?.axes.map(\.axis) == [2])
        #expect(SliceSums(shape: [1, 3, 320, 320])?.axes.map(\.axis) == [1])  // no columns of a map
    }
}

/// ONNX Runtime's QDQ fusion rules, applied to small QDQ graphs.
@Suite struct RuntimeFusionTests {
    static func qdq(_ g: Graph, _ x: String, _ type: DType = .uint8, constant: Bool = false) -> String {
        g.setInitializer(x + "_s", Tensor(shape: [], floats: [0.1]))
        g.setInitializer(x + "_z", Tensor(dtype: type, shape: []))
        if constant {
            g.setInitializer(x + "_q", Tensor(dtype: type, shape: [4, 4]))
        } else {
            g.nodes.append(Node(name: x + "_Q", opType: "QuantizeLinear", inputs: [x, x + "_s", x + "_z"], outputs: [x + "_q"]))
        }
        g.nodes.append(Node(name: x + "_DQ", opType: "DequantizeLinear", inputs: [x + "_q", x + "_s", x + "_z"], outputs: [x + "_dq"]))
        return x + "_dq"
    }

    @Test func verdicts() throws {
        let g = Graph(name: "g", inputs: [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(4), .value(4)]))])
        // MatMul with both inputs quantized and a float reader: MatMulIntegerToFloat.
        let a = Self.qdq(g, "x"), w = Self.qdq(g, "w", .int8, constant: true)
        g.nodes.append(Node(name: "mm", opType: "MatMul", inputs: [a, w], outputs: ["y"]))
        // MatMul whose output is quantized: QLinearMatMul.
        let w2 = Self.qdq(g, "w2", .int8, constant: true)
        g.nodes.append(Node(name: "mm2", opType: "MatMul", inputs: [a, w2], outputs: ["y2"]))
        let y2 = Self.qdq(g, "y2")
        // MatMul reading a float tensor: float.
        g.nodes.append(Node(name: "mm3", opType: "MatMul", inputs: ["x", w2], outputs: ["y3"]))
        // MatMul read by a Q and by a float node: float.
        let w4 = Self.qdq(g, "w4", .int8, constant: true)
        g.nodes.append(Node(name: "mm4", opType: "MatMul", inputs: [y2, w4], outputs: ["y4"]))
        _ = Self.qdq(g, "y4")
        g.nodes.append(Node(name: "neg", opType: "Neg", inputs: ["y4"], outputs: ["n4"]))
        // int8 activations with uint8 weights: float.
        let a8 = Self.qdq(g, "x8", .int8), wu = Self.qdq(g, "wu", .uint8, constant: true)
        g.nodes.append(Node(name: "mm5", opType: "MatMul", inputs: [a8, wu], outputs: ["y5"]))
        g.outputs = ["y", "y3", "n4", "y5"].map { ValueInfo(name: $0, type: TensorType(elementType: .float, shape: nil)) }
        let model = Model(graph: g, opsets: ["": 17])
        let s = RuntimeFusion.summary(of: model)
        let k = Dictionary(uniqueKeysWithValues: s.kernels.map { ($0.node, $0) })
        #expect(k["mm"]?.integerKernel == "MatMulIntegerToFloat")
        #expect(k["mm2"]?.integerKernel == "QLinearMatMul")
        #expect(k["mm3"]?.integerKernel == nil && k["mm3"]?.reason?.contains("'x' is not quantized") == true)
        #expect(k["mm4"]?.integerKernel == nil && k["mm4"]?.reason?.contains("read both quantized and by Neg 'neg'") == true)
        #expect(k["mm5"]?.integerKernel == nil && k["mm5"]?.reason?.contains("int8 input needs int8 weights") == true)
        #expect(s.total == 5 && s.integer == 2)
        #expect(s.line.hasPrefix("2 of 5 Conv/MatMul/Gemm run as integer kernels in ONNX Runtime (MatMulIntegerToFloat 1, QLinearMatMul 1); float: 'mm3'"))
    }
}
