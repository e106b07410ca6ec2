import QuantCore
import QuantExecutor
import QuantIR
import Testing

/// Runs a one-node model (opset `opset`, plus the `test` domain) and returns its outputs in order.
func runNode(_ node: Node, _ feeds: [(String, Tensor)], opset: Int = 21, registry: KernelRegistry = .standard) throws -> [Tensor] {
    let g = Graph(name: "single", nodes: [node],
                  inputs: feeds.map { ValueInfo(name: $0.0, type: TensorType(elementType: $0.1.dtype, shape: nil)) },
                  outputs: node.outputs.filter { !$0.isEmpty }.map { ValueInfo(name: $0, type: TensorType(elementType: nil, shape: nil)) })
    let exec = try Executor(model: Model(graph: g, opsets: ["": opset, "test": 1]), options: ExecutorOptions(threads: 2, registry: registry))
    let out = try exec.run(Dictionary(uniqueKeysWithValues: feeds))
    return node.outputs.filter { !$0.isEmpty }.map { out[$0]! }
}

/// A graph-valued attribute.
func graphAttribute(_ name: String, _ g: Graph) -> Attribute {
    var a = Attribute.int(name, 0)
    a.proto.type = .graph
    a.proto.clearI()
    a.subgraphs = [g]
    return a
}

func anyTensor(_ name: String, _ type: DType? = nil) -> ValueInfo { ValueInfo(name: name, type: TensorType(elementType: type, shape: nil)) }

/// The standard registry plus test-only `test::Add` (float, same shape or scalar right operand)
/// and `test::Less` (int64 scalar < constant attribute `than`), so bodies can compute without
/// the arithmetic families.
func controlFlowRegistry() -> KernelRegistry {
    var r = KernelRegistry.standard
    r.register("Add", domain: "test") { _ in
        ClosureKernel { inputs, _ in
            let a = inputs[0]!.floats(), b = inputs[1]!.floats()
            return [Tensor(shape: inputs[0]!.shape, floats: a.indices.map { a[$0] + b[b.count == 1 ? 0 : $0] })]
        }
    }
    r.register("Less", domain: "test") { ctx in
        let than = Int64(ctx.int("than", 0))
        return ClosureKernel { inputs, _ in [Tensor(shape: [], values: [inputs[0]!.int64s()[0] < than])] }
    }
    return r
}

@Test func ifRunsTheChosenBranch() throws {
    //  x ─ If(cond) ─ y     then: Identity(x)     else: Relu(x)
    let thenG = Graph(name: "then", nodes: [Node(name: "t", opType: "Identity", inputs: ["x"], outputs: ["t_out"])], outputs: [anyTensor("t_out")])
    let elseG = Graph(name: "else", nodes: [Node(name: "e", opType: "Relu", inputs: ["x"], outputs: ["e_out"])], outputs: [anyTensor("e_out")])
    let node = Node(name: "if", opType: "If", inputs: ["cond"], outputs: ["y"],
                    attributes: [graphAttribute("then_branch", thenG), graphAttribute("else_branch", elseG)])
    let x = Tensor(shape: [2], floats: [-1, 2])
    #expect(try runNode(node, [("cond", Tensor(shape: [], values: [true])), ("x", x)])[0].floats() == [-1, 2])
    #expect(try runNode(node, [("cond", Tensor(shape: [1], values: [false])), ("x", x)])[0].floats() == [0, 2])
}

/// Loop body: (i, cond_in, v) -> (cond_out = i < stopBefore, v_out = v + w, scan = v_out),
/// reading `w` from the outer graph.
func loopNode(stopBefore: Int, withM: Bool, withCond: Bool) -> Node {
    let body = Graph(name: "body", nodes: [
        Node(name: "less", opType: "Less", domain: "test", inputs: ["i"], outputs: ["cond_out"], attributes: [.int("than", stopBefore)]),
        Node(name: "add", opType: "Add", domain: "test", inputs: ["v", "w"], outputs: ["v_out"]),
        Node(name: "copy", opType: "Identity", inputs: ["v_out"], outputs: ["scan"]),
    ], inputs: [anyTensor("i", .int64), anyTensor("cond_in", .bool), anyTensor("v", .float)],
    outputs: [anyTensor("cond_out", .bool), anyTensor("v_out", .float), anyTensor("scan", .float)])
    return Node(name: "loop", opType: "Loop", inputs: [withM ? "M" : "", withCond ? "cond" : "", "v0"], outputs: ["v_final", "scans"],
                attributes: [graphAttribute("body", body)])
}

@Test func loopCarriesValuesStacksScansAndStopsOnCondition() throws {
    let feeds: [(String, Tensor)] = [("M", Tensor(shape: [], values: [Int64(3)])), ("cond", Tensor(shape: [], values: [true])),
                                     ("v0", Tensor(shape: [1], floats: [1])), ("w", Tensor(shape: [1], floats: [10]))]
    // M = 3, the condition stays true: three iterations, v = 1 + 3·10.
    var out = try runNode(loopNode(stopBefore: 100, withM: true, withCond: true), feeds, registry: controlFlowRegistry())
    #expect(out[0].floats() == [31])
    #expect(out[1].shape == [3, 1] && out[1].floats() == [11, 21, 31])
    // The body's condition turns false after iteration i = 1: two iterations.
    out = try runNode(loopNode(stopBefore: 1, withM: true, withCond: true), feeds, registry: controlFlowRegistry())
    #expect(out[0].floats() == [21] && out[1].floats() == [11, 21])
    // Without the cond input the body's condition is ignored: a plain for loop.
    out = try runNode(loopNode(stopBefore: 1, withM: true, withCond: false), feeds.filter { $0.0 != "cond" }, registry: controlFlowRegistry())
    #expect(out[0].floats() == [31])
    // Without M the loop is a while loop.
    out = try runNode(loopNode(stopBefore: 3, withM: false, withCond: true), feeds.filter { $0.0 != "M" }, registry: controlFlowRegistry())
    #expect(out[0].floats() == [41] && out[1].shape == [4, 1])
    // A false initial condition runs nothing: the scan output is empty.
    out = try runNode(loopNode(stopBefore: 3, withM: true, withCond: true),
                      feeds.map { $0.0 == "cond" ? ($0.0, Tensor(shape: [], values: [false])) : $0 }, registry: controlFlowRegistry())
    #expect(out[0].floats() == [1] && out[1].count == 0)
}

@Test func scanReadsInputsBackwardAndWritesOutputsInOrder() throws {
    // body: (s, x_t) -> (s + x_t, s + x_t);  x = [[1,2],[3,4],[5,6]] scanned backward.
    let body = Graph(name: "body", nodes: [
        Node(name: "add", opType: "Add", domain: "test", inputs: ["s", "xt"], outputs: ["s_out"]),
        Node(name: "copy", opType: "Identity", inputs: ["s_out"], outputs: ["y"]),
    ], inputs: [anyTensor("s", .float), anyTensor("xt", .float)], outputs: [anyTensor("s_out", .float), anyTensor("y", .float)])
    func scan(outputDirection: Int, outputAxis: Int) throws -> [Tensor] {
        let node = Node(name: "scan", opType: "Scan", inputs: ["s0", "x"], outputs: ["s", "ys"],
                        attributes: [graphAttribute("body", body), .int("num_scan_inputs", 1), .ints("scan_input_directions", [1]),
                                     .ints("scan_output_directions", [outputDirection]), .ints("scan_output_axes", [outputAxis])])
        return try runNode(node, [("s0", Tensor(shape: [2], floats: [0, 0])), ("x", Tensor(shape: [3, 2], floats: [1, 2, 3, 4, 5, 6]))],
                           opset: 16, registry: controlFlowRegistry())
    }
    var out = try scan(outputDirection: 0, outputAxis: 0)
    #expect(out[0].floats() == [9, 12])
    #expect(out[1].shape == [3, 2] && out[1].floats() == [5, 6, 8, 10, 9, 12])
    out = try scan(outputDirection: 1, outputAxis: -1)
    #expect(out[1].shape == [2, 3] && out[1].floats() == [9, 8, 5, 12, 10, 6])
}
