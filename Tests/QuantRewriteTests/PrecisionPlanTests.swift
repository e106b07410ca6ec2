import Foundation
import QuantAlgorithms
import QuantCalibration
import QuantCore
import QuantIR
@testable import QuantRewrite
import Testing

/// x -> Conv c1 (3x3, bias) -> Relu r1 -> Conv c2 (1x1, bias) -> y, built in code; `extra` adds
/// nodes before the convs (to take names the rewrite would choose).
private func model(extra: [Node] = [], extraOutputs: [String] = []) -> Model {
    func weights(_ shape: [Int], seed: Int) -> Tensor {
        let n = shape.reduce(1, *)
        return Tensor(shape: shape, floats: (0..<n).map { Float(sin(Double($0 * 7 + seed))) * (1 + Float($0 % 5)) * 0.1 })
    }
    let c1 = Node(name: "c1", opType: "Conv", inputs: ["x", "w1", "b1"], outputs: ["c1_out"])
    c1.setAttribute(.ints("pads", [1, 1, 1, 1]))
    let r1 = Node(name: "r1", opType: "Relu", inputs: ["c1_out"], outputs: ["r1_out"])
    let c2 = Node(name: "c2", opType: "Conv", inputs: ["r1_out", "w2", "b2"], outputs: ["y"])
    let f = TensorType(elementType: .float, shape: [.value(1), .value(4), .value(8), .value(8)])
    let g = Graph(name: "g", nodes: extra + [c1, r1, c2], inputs: [ValueInfo(name: "x", type: f)],
                  outputs: (["y"] + extraOutputs).map { ValueInfo(name: $0, type: TensorType(elementType: .float, shape: nil)) })
    g.setInitializer("w1", weights([8, 4, 3, 3], seed: 1))
    g.setInitializer("b1", Tensor(shape: [8], floats: (0..<8).map { Float($0) * 0.05 - 0.2 }))
    g.setInitializer("w2", weights([6, 8, 1, 1], seed: 2))
    g.setInitializer("b2", Tensor(shape: [6], floats: (0..<6).map { Float($0) * 0.1 }))
    return Model(graph: g, opsets: ["": 17])
}

/// Calibration ranges of every float activation of `model()`.
private let ranges: [String: ClipRange] = [
    "x": ClipRange(lo: -1, hi: 1), "c1_out": ClipRange(lo: -3, hi: 4), "r1_out": ClipRange(lo: 0, hi: 4), "y": ClipRange(lo: -2, hi: 3),
    "x_DequantizeLinear_Output": ClipRange(lo: -1, hi: 1),
]

private func rewrite(_ m: Model, plan: PrecisionPlan? = nil) throws -> QDQRewriter.Result {
    let options = QDQRewriter.Options(scheme: QuantScheme(), control: QuantControl(plan: plan)) { name, _, _ in
        ranges[name].map { ($0, "minmax") }
    }
    return try QDQRewriter(model: m, options: options).run()
}

private func bytes(_ m: Model) throws -> Data {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID().uuidString).onnx").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try m.save(to: path)
    return try #require(FileManager.default.contents(atPath: path))
}

private func node(_ m: Model, producing t: String) -> Node? { m.graph.nodes.first { $0.outputs.contains(t) } }

@Test func planWrittenByADefaultRunSaysWhatEachOpGot() throws {
    let m = model()
    let r = try rewrite(m)
    #expect(r.plan.ops.map(\.node) == ["c1", "r1", "c2"])
    #expect(r.plan.ops.map(\.opId) == [0, 1, 2])
    #expect(r.plan.ops.map(\.dtype) == [.int8, .int8, .int8])
    #expect(r.plan.ops[0].per == .channel && r.plan.ops[2].per == .channel && r.plan.ops[1].per == nil)
    #expect(r.plan.ops.allSatisfy { $0.saturation == .auto && $0.reason == nil })
}

@Test func planRaisesLowersAndRoundsOps() throws {
    // c1 on 16-bit activations with one weight scale, c2 in fp16.
    var plan = try rewrite(model()).plan
    plan.ops[0].dtype = .int16
    plan.ops[0].per = .tensor
    plan.ops[2].dtype = .fp16
    let m = model()
    let r = try rewrite(m, plan: plan)
    #expect(r.parameters["x"]?.dtype == "uint16")
    #expect(r.parameters["w1"]?.scale.count == 1 && r.parameters["w1"]?.axis == nil)
    #expect(r.parameters["w2"] == nil, "c2 runs float: its weight stays float")
    let c2 = try #require(m.graph.nodes.first { $0.name == "c2" })
    // c2's activation input and its output go through a Cast pair to fp16; its constants (weight,
    // bias) are stored in fp16 and read through one Cast to float.
    for (k, t) in c2.inputs.enumerated() {
        let up = try #require(node(m, producing: t))
        #expect(up.opType == "Cast" && up.attribute("to")?.int == Int(DType.float.rawValue))
        if k == 0 {
            let down = try #require(node(m, producing: up.inputs[0]))
            #expect(down.opType == "Cast" && down.attribute("to")?.int == Int(DType.float16.rawValue))
        } else {
            let stored = try #require(m.graph.initializer(up.inputs[0]))
            #expect(stored.dtype == .float16)
        }
    }
    let out = try #require(node(m, producing: "y"))
    #expect(out.opType == "Cast" && node(m, producing: out.inputs[0])?.opType == "Cast")
    #expect(r.plan.ops.map(\.dtype) == [.int16, .int16, .fp16])
    #expect(r.plan.ops[2].reason == "plan")

    // fp32: c2 float with no Cast; its input stays quantized for c1's integer kernel.
    plan.ops[2].dtype = .fp32
    let m2 = model()
    let r2 = try rewrite(m2, plan: plan)
    #expect(!m2.graph.nodes.contains { $0.opType == "Cast" })
    #expect(r2.floatNodes.contains("c2") && r2.plan.ops[2].dtype == .fp32)
}

@Test func writtenPlanReadBackGivesTheSameModelAndPlan() throws {
    var plan = try rewrite(model()).plan
    plan.ops[0].dtype = .int16
    plan.ops[2].dtype = .bf16
    let a = model()
    let ra = try rewrite(a, plan: plan)
    let text = ra.plan.csv()
    let b = model()
    let rb = try rewrite(b, plan: try PrecisionPlan(csv: text, path: "a.plan.csv"))
    #expect(rb.plan.csv() == text)
    #expect(try bytes(a) == bytes(b))
}

@Test func planCSVParsesIcraftColumnsAndQuotedNames() throws {
    let text = "op_id,type,dtype,per,saturation,value_range_in_bits\n0,Conv,int16,tensor,kld,16\n2,Conv,float32,,,\n"
    let p = try PrecisionPlan(csv: text, path: "icraft.csv")
    #expect(p.ops.count == 2 && p.ops[0].node.isEmpty && p.op(node: "c1", opId: 0)?.dtype == .int16)
    #expect(p.ops[0].saturation == .kl(stride: 128) && p.ops[1].dtype == .fp32)
    let named = PrecisionPlan(ops: [.init(opId: 0, node: "a,\"b\"", type: "Conv", dtype: .int8, per: .channel, saturation: .percentile(0.999))])
    #expect(try PrecisionPlan(csv: named.csv(), path: "p.csv") == named)
    // A spreadsheet's byte order mark; a plan by node names only reads back from its own CSV.
    let bom = try PrecisionPlan(csv: "\u{FEFF}node,dtype\r\nc1,int16\r\n", path: "excel.csv")
    #expect(bom.ops.count == 1 && bom.ops[0].node == "c1" && bom.ops[0].opId == -1)
    #expect(try PrecisionPlan(csv: bom.csv(), path: "again.csv") == bom)
}

@Test func badPlansAreRefusedWithTheirLine() throws {
    let bad: [(String, String, String)] = [
        ("node,dtype\nc1,int9\n", "QK5005", "line 2"),
        ("node,dtype,per\nc1,int8,group=1\n", "QK5005", "group=N"),
        ("node,dtype,per\nc1,int8,rows\n", "QK5005", "per 'rows'"),
        ("node,dtype,value_range_in_bits\nc1,int8,9\n", "QK5005", "value_range_in_bits 9"),
        ("node,dtype,value_range_in_bits\nc1,fp32,7\n", "QK5005", "float one"),
        ("node,dtype,colour\nc1,int8,red\n", "QK5005", "colour"),
        ("node,dtype\nc1,int8\nc1,fp32\n", "QK5005", "second time"),
        ("node,dtype,saturation\nc1,int8,kl(0)\n", "QK5005", "saturation"),
    ]
    for (text, code, words) in bad {
        do {
            _ = try PrecisionPlan(csv: text, path: "p.csv")
            Issue.record("accepted \(text)")
        } catch let e as QuantKitError {
            #expect(e.code == code && e.description.contains(words) && e.description.contains("p.csv"), "\(e)")
        }
    }
    // value_range_in_bits within the dtype's bits is read; the dtype's own bits mean none.
    let ranged = try PrecisionPlan(csv: "node,dtype,value_range_in_bits\nc1,int8,7\nc2,int8,8\n", path: "p.csv")
    #expect(ranged.ops[0].valueRangeInBits == 7 && ranged.ops[1].valueRangeInBits == nil)
    // per group=N is read and written back as such.
    let grouped = try PrecisionPlan(csv: "node,dtype,per\nc1,int8,Group=32\n", path: "p.csv")
    #expect(grouped.ops[0].per == .group(32) && grouped.csv().contains(",group=32,"))
    // A plan naming a node the model does not have.
    do {
        _ = try rewrite(model(), plan: PrecisionPlan(ops: [.init(opId: 0, node: "conv_9", type: "Conv", dtype: .fp32)]))
        Issue.record("a plan naming a missing node was accepted")
    } catch let e as QuantKitError {
        #expect(e.code == "QK5006" && e.description.contains("conv_9"))
    }
}

@Test func biasIsQuantizedWhenTheDequantizedNameIsTaken() throws {
    // A value already named like the DequantizeLinear output of x: the rewrite picks another
    // name for it, and must still find x's scale for c1's int32 bias.
    let taken = Node(name: "neg", opType: "Neg", inputs: ["x"], outputs: ["x_DequantizeLinear_Output"])
    let m = model(extra: [taken], extraOutputs: ["x_DequantizeLinear_Output"])
    let r = try rewrite(m)
    #expect(r.parameters["b1"]?.role == .bias && r.parameters["b1"]?.dtype == "int32")
    let c1 = try #require(m.graph.nodes.first { $0.name == "c1" })
    #expect(c1.inputs[0] != "x_DequantizeLinear_Output")
}

@Test func planDecidesWithoutInsertingAnything() throws {
    let m = model()
    let rewriter = QDQRewriter(model: m, options: QDQRewriter.Options(scheme: QuantScheme(), control: QuantControl()) { name, _, _ in
        ranges[name].map { ($0, "minmax") }
    })
    var result = QDQRewriter.Result()
    for (k, n) in m.graph.nodes.enumerated() { result.opIds[ObjectIdentifier(n)] = k }
    let p = try rewriter.plan(m.graph, main: true, settings: [], result: &result)
    // The Relu is absorbed (c1 now produces r1_out, whose range starts at 0); nothing else changed.
    #expect(m.graph.nodes.map(\.opType) == ["Conv", "Conv"])
    #expect(p.rules.map(\.0.name) == ["c1", "c2"] && p.floatRun.isEmpty)
    #expect(Set(p.tensors.keys) == ["x", "r1_out", "y"])
    let r = try #require(p.tensors["r1_out"])
    #expect(r.range == ClipRange(lo: 0, hi: 4) && r.zeroPoint == 0 && r.grid == .uint8Asymmetric && abs(r.scale - 4.0 / 255) < 1e-12)
    #expect(p.tensors["x"]?.zeroPoint == 128 || p.tensors["x"]?.zeroPoint == 127)

    // A plan keeping c2 float: it runs float, its input stays quantized for c1's integer kernel.
    var plan = try rewrite(model()).plan
    plan.ops[2].dtype = .fp32
    let m2 = model()
    let rewriter2 = QDQRewriter(model: m2, options: QDQRewriter.Options(scheme: QuantScheme(), control: QuantControl(plan: plan)) { name, _, _ in
        ranges[name].map { ($0, "minmax") }
    })
    var result2 = QDQRewriter.Result()
    for (k, n) in m2.graph.nodes.enumerated() { result2.opIds[ObjectIdentifier(n)] = k }
    let p2 = try rewriter2.plan(m2.graph, main: true, settings: [], result: &result2)
    #expect(p2.rules.map(\.0.name) == ["c1"] && p2.floatRun.count == 1 && p2.keptFloat.isEmpty)
    #expect(p2.tensors["r1_out"] != nil && p2.tensors["y"] == nil)
}
