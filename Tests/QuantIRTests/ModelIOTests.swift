import Foundation
import QuantCore
import QuantIR
import QuantONNX
import Testing

@Test func everyCachedModelRoundTripsByteForByte() throws {
    let models = try Fixtures.cachedModels()
    // 1884 node cases + 9 light models + the real models; fewer means the cache is not set up.
    try #require(models.count >= 1893, "run scripts/test.sh (it fetches models and writes the ONNX test suites)")
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    var different: [String] = []
    for path in models {
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        let model = try Model.load(path: path)
        let out = dir.appendingPathComponent("rt.onnx").path
        try model.save(to: out)
        if try Data(contentsOf: URL(fileURLWithPath: out)) != original { different.append(path) }
    }
    #expect(different.isEmpty, "not byte-identical: \(different.prefix(10))")
}

@Test func subgraphsFunctionsAndMetadataSurviveRoundTrip() throws {
    let path = Fixtures.cache.appendingPathComponent("models/silero_vad.onnx").path
    let model = try Model.load(path: path)
    let subgraphs = model.graph.nodes.flatMap(\.subgraphs)
    #expect(!subgraphs.isEmpty, "silero VAD has If branches")
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    // Edit a subgraph, save, reload: the edit is kept and everything else is intact.
    let sub = subgraphs[0]
    sub.name = "edited_branch"
    let out = dir.appendingPathComponent("vad.onnx").path
    try model.save(to: out)
    let again = try Model.load(path: out)
    #expect(again.graph.nodes.flatMap(\.subgraphs).first?.name == "edited_branch")
    #expect(again.graph.allNodes.count == model.graph.allNodes.count)
    #expect(again.extras.opsetImport == model.extras.opsetImport)
    #expect(again.extras.metadataProps == model.extras.metadataProps)
    #expect(again.extras.functions == model.extras.functions)
}

@Test func builtModelSavesLoadsAndKeepsTensors() throws {
    let model = Fixtures.tinyModel()
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("tiny.onnx").path
    try model.save(to: path)
    let loaded = try Model.load(path: path)
    #expect(loaded.graph.nodes.map(\.opType) == ["Constant", "Conv", "Relu", "Add"])
    #expect(loaded.graph.initializer("W")?.floats() == [1, -2])
    #expect(loaded.graph.inputs[0].tensorType?.shape == [.param("N"), .value(1), .value(4), .value(4)])
    #expect(loaded.graph.outputs[0].tensorType?.shape == nil)
    #expect(loaded.graph.nodes[1].attribute("kernel_shape")?.ints == [1, 1])
    #expect(loaded.opsets == ["": 17])
    #expect(Verifier.verify(loaded).isEmpty)
}

@Test func externalDataRoundTripIsZeroCopyAndExact() throws {
    let model = Fixtures.tinyModel()
    let big = (0..<10_000).map { Float($0) * 0.5 }
    model.graph.setInitializer("big", Tensor(shape: [100, 100], floats: big))
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("ext.onnx").path
    try model.save(to: path, options: SaveOptions(externalData: .always, externalThreshold: 1024))
    #expect(FileManager.default.fileExists(atPath: path + ".data"))
    let loaded = try Model.load(path: path)
    #expect(loaded.externalFiles.count == 1)
    let t = try #require(loaded.graph.initializer("big"))
    #expect(t.storage.isMapped, "aligned external tensors are read from the mapping")
    #expect(t.floats() == big)
    #expect(loaded.graph.initializer("W")?.storage.isMapped == false, "small tensors stay inline")
    // Saving it again inline gives the same tensors and no side file.
    let inline = dir.appendingPathComponent("inline.onnx").path
    try loaded.save(to: inline, options: SaveOptions(externalData: .never))
    #expect(!FileManager.default.fileExists(atPath: inline + ".data"))
    #expect(try Model.load(path: inline).graph.initializer("big")?.floats() == big)
}

@Test func constantNodesFoldIntoInitializers() throws {
    let model = Fixtures.tinyModel()
    #expect(try ConstantNodeFolding.run(model.graph) == 1)
    #expect(model.graph.nodes.map(\.opType) == ["Conv", "Relu", "Add"])
    #expect(model.graph.initializer("k")?.floats() == [3])
    #expect(Verifier.verify(model).isEmpty)
}

@Test func constantFoldingOnPaddleModelLeavesNoConstants() throws {
    let model = try Model.load(path: Fixtures.cache.appendingPathComponent("models/ppocrv4_rec.onnx").path)
    let constants = model.graph.nodes.filter { $0.opType == "Constant" }.count
    #expect(try ConstantNodeFolding.run(model.graph) == constants)
    #expect(model.graph.nodes.allSatisfy { $0.opType != "Constant" })
    #expect(model.graph.initializers.count == constants)
    #expect(Verifier.verify(model).filter { $0.severity == .error }.isEmpty)
}
