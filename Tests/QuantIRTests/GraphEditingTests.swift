import QuantCore
import QuantIR
import Testing

@Test func topologicalSortRestoresDependencyOrderStably() throws {
    let model = Fixtures.tinyModel()
    let g = model.graph
    g.nodes.reverse()  // Add, Relu, Conv, Constant
    #expect(Verifier.verify(model).contains { $0.code == "QK1202" })
    try g.sortTopologically()
    // Constant and Conv are both ready at the start; the stable order takes the earlier
    // position in the (reversed) list first.
    #expect(g.nodes.map(\.name) == ["conv", "relu", "k", "add"])
    #expect(Verifier.verify(model).isEmpty)
}

@Test func cycleIsReported() {
    let model = Fixtures.tinyModel()
    model.graph.nodes[1].inputs[0] = "r"  // conv reads relu's output
    #expect(throws: QuantKitError.self) { try model.graph.topologicalOrder() }
    #expect(Verifier.verify(model).contains { $0.code == "QK1203" })
}

@Test func verifierFindsUndefinedDuplicateAndMissingOutput() {
    let model = Fixtures.tinyModel()
    let g = model.graph
    g.nodes[2].inputs = ["nope"]
    g.nodes.append(Node(name: "conv", opType: "Relu", inputs: ["x"], outputs: ["c"]))
    g.outputs.append(ValueInfo(name: "ghost", type: TensorType(elementType: .float, shape: nil)))
    let codes = Set(Verifier.verify(model).map(\.code))
    #expect(codes == ["QK1201", "QK1204", "QK1205", "QK1206"])
}

@Test func producersConsumersAndEditing() throws {
    let model = Fixtures.tinyModel()
    let g = model.graph
    var index = GraphIndex(g)
    #expect(index.producer["c"]?.name == "conv")
    #expect(index.consumers(of: "x").map(\.name) == ["conv"])
    #expect(index.consumers(of: "r").map(\.name) == ["add"])

    // Insert Identity after relu, then bypass it again.
    let relu = g.nodes[2]
    let id = Node(name: "id", opType: "Identity", inputs: ["r"], outputs: ["r2"])
    g.insert(id, after: relu)
    g.replaceUses(of: "r", with: "r2")
    id.inputs = ["r"]
    index = GraphIndex(g)
    #expect(index.consumers(of: "r2").map(\.name) == ["add"])
    g.bypass(id, input: "r")
    #expect(g.nodes.map(\.name) == ["k", "conv", "relu", "add"])
    #expect(GraphIndex(g).consumers(of: "r").map(\.name) == ["add"])

    // Renaming a graph output renames its producer too.
    g.renameValue("y", to: "out")
    #expect(g.outputs[0].name == "out")
    #expect(g.nodes.last?.outputs == ["out"])
    g.renameValue("W", to: "weight")
    #expect(g.initializer("weight") != nil && g.nodes[1].inputs[1] == "weight")

    var names = NameAllocator(g)
    #expect(names.fresh("relu") == "relu_1")
    #expect(names.fresh("relu") == "relu_2")
    #expect(names.fresh("fresh") == "fresh")
    #expect(Verifier.verify(model).isEmpty)
}

@Test func subgraphReadsOfOuterValuesFollowRenames() throws {
    //  x ─ If(cond) ─ y     then: Identity(x) -> t_out     else: Neg(x) -> e_out
    let thenG = Graph(name: "then", nodes: [Node(name: "t", opType: "Identity", inputs: ["x"], outputs: ["t_out"])],
                      outputs: [ValueInfo(name: "t_out", type: TensorType(elementType: .float, shape: nil))])
    let elseG = Graph(name: "else", nodes: [Node(name: "e", opType: "Neg", inputs: ["x"], outputs: ["e_out"])],
                      outputs: [ValueInfo(name: "e_out", type: TensorType(elementType: .float, shape: nil))])
    var thenAttr = Attribute.int("then_branch", 0)
    thenAttr.proto.type = .graph
    thenAttr.proto.clearI()
    thenAttr.subgraphs = [thenG]
    var elseAttr = Attribute.int("else_branch", 0)
    elseAttr.proto.type = .graph
    elseAttr.proto.clearI()
    elseAttr.subgraphs = [elseG]
    let g = Graph(name: "main", nodes: [Node(name: "if", opType: "If", inputs: ["cond"], outputs: ["y"], attributes: [thenAttr, elseAttr])],
                  inputs: [ValueInfo(name: "cond", type: TensorType(elementType: .bool, shape: [])),
                           ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(2)]))],
                  outputs: [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))])
    let model = Model(graph: g, opsets: ["": 17])
    #expect(Verifier.verify(model).isEmpty)
    #expect(GraphIndex(g).consumers(of: "x").map(\.name) == ["if"], "If reads x through its branches")
    g.renameValue("x", to: "input")
    #expect(thenG.nodes[0].inputs == ["input"] && elseG.nodes[0].inputs == ["input"])
    #expect(Verifier.verify(model).isEmpty)
    thenG.nodes[0].inputs = ["missing"]
    #expect(Verifier.verify(model).map(\.code) == ["QK1201"])
}
