import Foundation
import QuantCore
import QuantExecutor
import QuantIR
import QuantKit
import Testing

/// The repository root (this file is Tests/QuantKitTests/ErrorCatalogTests.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Every `QKnnnn` in `text`.
func errorCodes(in text: String) -> Set<String> {
    let re = try! NSRegularExpression(pattern: "QK[0-9]{4}")
    return Set(re.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range, in: text)!]) })
}

/// Fails when docs/ERRORS.md catalogs a code that no test (Swift or interop) mentions, or when
/// the sources (Swift, and the Python package) throw a code the catalog does not list.
@Test func everyCataloguedCodeIsTested() throws {
    let catalog = errorCodes(in: try String(contentsOf: repositoryRoot.appendingPathComponent("docs/ERRORS.md"), encoding: .utf8))
    #expect(catalog.count > 50)
    func codes(under dir: String, extensions: Set<String>) throws -> Set<String> {
        var found = Set<String>()
        let e = FileManager.default.enumerator(at: repositoryRoot.appendingPathComponent(dir), includingPropertiesForKeys: nil)
        while let url = e?.nextObject() as? URL {
            if extensions.contains(url.pathExtension) { found.formUnion(errorCodes(in: try String(contentsOf: url, encoding: .utf8))) }
        }
        return found
    }
    let tested = try codes(under: "Tests", extensions: ["swift", "py"])
    let untested = catalog.subtracting(tested).sorted()
    #expect(untested.isEmpty, "docs/ERRORS.md lists codes no test triggers: \(untested)")
    let thrown = try codes(under: "Sources", extensions: ["swift"]).union(try codes(under: "python", extensions: ["py"]))
    let uncatalogued = thrown.subtracting(catalog).subtracting(["QK1009"]).sorted()  // QK1009: a range named in a doc comment
    #expect(uncatalogued.isEmpty, "the sources throw codes docs/ERRORS.md does not list: \(uncatalogued)")
}

/// A one-node model `x -> op -> y` with float input of `shape`.
func oneNodeModel(_ op: String, inputType: DType = .float, shape: [Int] = [2]) -> Model {
    let g = Graph(name: "g", nodes: [Node(name: "n", opType: op, inputs: ["x"], outputs: ["y"])],
                  inputs: [ValueInfo(name: "x", type: TensorType(elementType: inputType, shape: shape.map { .value($0) }))],
                  outputs: [ValueInfo(name: "y", type: TensorType(elementType: nil, shape: nil))])
    return Model(graph: g, opsets: ["": 17])
}

@Test func unsupportedOperandTypeIsQK3005() throws {
    let exec = try Executor(model: oneNodeModel("Sigmoid", inputType: .int32), options: ExecutorOptions(threads: 1))
    let e = codedError { _ = try exec.run(["x": Tensor(shape: [2], values: [Int32(1), 2])]) }
    #expect(e?.code == "QK3005")
    #expect(e?.message.contains("(Sigmoid)") == true && e?.message.hasSuffix("is not supported") == true)
}

@Test func statisticsFileErrorsAreQK4001To4004() throws {
    let missing = codedError { _ = try StatisticsFile.read(path: "/nonexistent/stats.json") }
    #expect(missing?.code == "QK4001" && missing?.message == "cannot read statistics file '/nonexistent/stats.json'")
    let notStats = codedError { _ = try StatisticsFile.read(path: try temporaryFile(#"{"a": 1}"#, ext: "json")) }
    #expect(notStats?.code == "QK4002" && notStats?.message.contains("is not a QuantKit statistics file") == true)
    let csv = codedError { _ = try StatisticsFile.read(path: try temporaryFile("tensor,min,max\nx,1,oops\n", ext: "csv")) }
    #expect(csv?.code == "QK4003" && csv?.message.hasSuffix("line 2 is not `tensor,min,max`: x,1,oops") == true)
    let reversed = codedError { _ = try StatisticsFile.importCSV("x,2,1\n", path: "r.csv") }
    #expect(reversed?.code == "QK4003" && reversed?.message == "'r.csv' line 1: min 2.0 is above max 1.0 or not finite")
    let a = StatisticsFile(model: "a.onnx", samples: 1, tensors: [:]), b = StatisticsFile(model: "b.onnx", samples: 1, tensors: [:])
    let merge = codedError { _ = try StatisticsFile.merged(a, b) }
    #expect(merge?.code == "QK4004" && merge?.message == "statistics of different models cannot merge ('a.onnx' and 'b.onnx')")
}

@Test func calibrationWithoutBatchesIsQK4005() {
    let e = codedError { _ = try Calibrator(threads: 1).run(model: oneNodeModel("Relu"), modelName: "relu", total: 0, next: { nil }) }
    #expect(e?.code == "QK4005" && e?.message == "calibration received no data")
}

/// `x(1x4) -> Relu -> y` saved as relu.onnx in a fresh folder; returns the folder and the path.
func savedReluModel() throws -> (URL, String) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qk-relu-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let modelPath = dir.appendingPathComponent("relu.onnx").path
    try oneNodeModel("Relu", shape: [1, 4]).save(to: modelPath)
    return (dir, modelPath)
}

@Test func asyncQuantizeRunsTheWholePipeline() async throws {
    // Calibrated on 3 random items; writes the QDQ model and the record into a new sub-folder.
    let (dir, modelPath) = try savedReluModel()
    var data = DatasetConfig(inputs: [InputConfig(name: "", source: .random)])
    data.randomItems = 3
    let config = QuantizerConfiguration(output: dir.appendingPathComponent("sub/relu.q.onnx").path, data: data)
    let r = try await Quantizer(configuration: config).quantize(model: modelPath)
    #expect(r.calibrationBatches == 3 && r.calibrationItems == 3)
    #expect(FileManager.default.fileExists(atPath: r.modelPath) && r.modelPath.hasSuffix("sub/relu.q.onnx"))
    #expect(r.parametersPath.hasSuffix("sub/relu.qparams.json"))
    let q = try Model.load(path: r.modelPath)
    #expect(q.graph.nodes.contains { $0.opType == "QuantizeLinear" })
}

@Test func quantizeHonoursCancellation() async throws {
    let (dir, modelPath) = try savedReluModel()
    var data = DatasetConfig(inputs: [InputConfig(name: "x", source: .random)])
    data.randomItems = 3
    // The task cancels itself before quantizing, so the check between batches must stop it.
    let task = Task { () async throws -> QuantizationResult in
        withUnsafeCurrentTask { $0?.cancel() }
        return try await Quantizer(configuration: QuantizerConfiguration(data: data)).quantize(model: modelPath)
    }
    await #expect(throws: CancellationError.self) { _ = try await task.value }
    #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("relu.q.onnx").path))
}

@Test func executorRefusesANodeOutsideItsSchemaWithQK1207() throws {
    let model = oneNodeModel("Relu")
    model.graph.nodes[0].inputs = []
    let e = codedError { _ = try Executor(model: model, options: ExecutorOptions(threads: 1)) }
    #expect(e?.code == "QK1207" && e?.message == "node Relu 'n' has 0 inputs; Relu-14 takes 1")
}
