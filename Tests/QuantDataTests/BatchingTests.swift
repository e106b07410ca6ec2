import Foundation
import QuantCore
import QuantIR
import Testing
@testable import QuantData

/// Five items [i, i, i, i] as .npy files in a folder.
private func fiveItems(_ dir: URL) throws {
    for i in 0..<5 { try Fixtures.writeNpy(Tensor(shape: [4], floats: Array(repeating: Float(i), count: 4)), dir.appendingPathComponent("x/\(i).npy")) }
}

@Test func partialLastBatchIsKept() throws {
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    try fiveItems(dir)
    let sig = InputSignature(name: "x", dtype: .float, shape: [nil, 4], symbols: ["N", nil])
    let ds = try CalibrationDataset(signatures: [sig], config: DatasetConfig(inputs: [InputConfig(name: "x", source: .folder(dir.appendingPathComponent("x").path))], batchSize: 2))
    #expect(ds.itemCount == 5 && ds.batchCount == 3)
    let batches = try Fixtures.all(ds)
    #expect(batches.map { $0.tensors["x"]!.shape } == [[2, 4], [2, 4], [1, 4]])
    #expect(batches.map { $0.tensors["x"]!.floats()[0] } == [0, 2, 4])
    #expect(batches[1].tensors["x"]!.floats() == [2, 2, 2, 2, 3, 3, 3, 3])
    #expect(ds.report.batches == 3 && ds.report.items == 5 && ds.report.warnings.isEmpty)
}

@Test func stepsStopEarlyAndPrefetchKeepsOrder() throws {
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    try fiveItems(dir)
    let sig = InputSignature(name: "x", dtype: .double, shape: [nil, 4])
    for prefetch in [1, 2, 4] {
        let cfg = DatasetConfig(inputs: [InputConfig(name: "x", source: .folder(dir.appendingPathComponent("x").path))], batchSize: 1, steps: 4, prefetch: prefetch)
        let batches = try Fixtures.all(try CalibrationDataset(signatures: [sig], config: cfg))
        #expect(batches.map { $0.tensors["x"]!.doubles()[0] } == [0, 1, 2, 3])
        #expect(batches.allSatisfy { $0.tensors["x"]!.dtype == .double })
    }
}

@Test func droppingAStreamEarlyStopsItsWorker() throws {
    let sig = InputSignature(name: "x", dtype: .float, shape: [nil, 8])
    let ds = try CalibrationDataset(signatures: [sig], config: DatasetConfig(inputs: [InputConfig(name: "x", source: .random)], randomItems: 1000))
    do {
        let s = ds.makeStream()
        _ = try s.next()
    }
    Thread.sleep(forTimeInterval: 0.05)
    #expect(ds.report.batches < 10)
}

@Test func prefetchQueueIsBounded() throws {
    let sig = InputSignature(name: "x", dtype: .float, shape: [nil, 8])
    for prefetch in [1, 2, 3] {
        let cfg = DatasetConfig(inputs: [InputConfig(name: "x", source: .random)], prefetch: prefetch, randomItems: 100)
        let ds = try CalibrationDataset(signatures: [sig], config: cfg)
        let s = ds.makeStream()
        _ = try s.next()
        Thread.sleep(forTimeInterval: 0.1)
        // One batch taken, `prefetch` queued, at most one more built and waiting for room.
        #expect(ds.report.batches >= 1 + prefetch && ds.report.batches <= 2 + prefetch, "prefetch \(prefetch)")
        s.cancel()
    }
}

@Test func integerInputsAreFedAsIntegers() throws {
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let p = try Fixtures.writeNpy(Tensor(shape: [1, 3], values: [Int32(101), 7, 102]), dir.appendingPathComponent("ids.npy"))
    let sig = InputSignature(name: "ids", dtype: .int64, shape: [nil, nil])
    let b = try Fixtures.all(try CalibrationDataset(signatures: [sig], config: DatasetConfig(inputs: [InputConfig(name: "ids", source: .files([p]))])))
    #expect(b[0].tensors["ids"]!.dtype == .int64 && b[0].tensors["ids"]!.int64s() == [101, 7, 102])
}

@Test func sharedListFeedsSeveralInputsAndRawFilesUseConfiguredTypes() throws {
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    var lines = ""
    for i in 0..<3 {
        try Fixtures.writeNpy(Tensor(shape: [2], values: [Int64(i), Int64(i)]), dir.appendingPathComponent("a\(i).npy"))
        try Data([UInt8(i), UInt8(i + 1)]).write(to: dir.appendingPathComponent("b\(i).raw"))
        lines += "a\(i).npy;b\(i).raw\n"
    }
    let list = try Fixtures.write("# ids;pixels\n" + lines, dir.appendingPathComponent("pairs.txt"))
    let sigs = [InputSignature(name: "a", dtype: .int64, shape: [nil, 2]), InputSignature(name: "b", dtype: .float, shape: [nil, 2])]
    let cfg = DatasetConfig(inputs: [InputConfig(name: "a", source: .sharedList(column: 0)),
                                     InputConfig(name: "b", source: .sharedList(column: 1), rawDType: .uint8)],
                            sharedList: list, batchSize: 2)
    let batches = try Fixtures.all(try CalibrationDataset(signatures: sigs, config: cfg))
    #expect(batches.count == 2)
    #expect(batches[0].tensors["a"]!.int64s() == [0, 0, 1, 1])
    #expect(batches[0].tensors["b"]!.dtype == .float && batches[0].tensors["b"]!.floats() == [0, 1, 1, 2])
    #expect(batches[1].tensors["b"]!.shape == [1, 2])
}

@Test func miniLMCalibratesFromTwoListFiles() throws {
    let path = Fixtures.root.appendingPathComponent(".cache/models/minilm_l3.onnx").path
    try #require(FileManager.default.fileExists(atPath: path), "run scripts/fetch-models.sh")
    let model = try Model.load(path: path)
    let sigs = CalibrationDataset.signatures(of: model.graph)
    #expect(sigs.map(\.name) == ["input_ids", "attention_mask"])
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    var ids = "", mask = ""
    for i in 0..<5 {
        try Fixtures.writeNpy(Tensor(shape: [1, 16], values: (0..<16).map { Int64(100 + i * 16 + $0) }), dir.appendingPathComponent("ids/\(i).npy"))
        try Fixtures.writeNpy(Tensor(shape: [16], values: [Int64](repeating: 1, count: 16)), dir.appendingPathComponent("mask/\(i).npy"))
        ids += "ids/\(i).npy\n"
        mask += "mask/\(i).npy\n"
    }
    let cfg = DatasetConfig(inputs: [
        InputConfig(name: "input_ids", source: .list(try Fixtures.write(ids, dir.appendingPathComponent("ids.txt")))),
        InputConfig(name: "attention_mask", source: .list(try Fixtures.write(mask, dir.appendingPathComponent("mask.txt")))),
    ], batchSize: 2)
    let batches = try Fixtures.all(try CalibrationDataset(model: model, config: cfg))
    #expect(batches.map { $0.tensors["input_ids"]!.shape } == [[2, 16], [2, 16], [1, 16]])
    #expect(batches.allSatisfy { $0.tensors["input_ids"]!.dtype == .int64 && $0.tensors["attention_mask"]!.dtype == .int64 })
    #expect(batches[2].tensors["input_ids"]!.int64s().first == 164)
}

@Test func swiftClosureAndPythonFunctionPreprocess() throws {
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    for i in 0..<3 { _ = try Fixtures.write("\(i)", dir.appendingPathComponent("\(i).txt")) }
    let files = (0..<3).map { dir.appendingPathComponent("\($0).txt").path }
    let sig = InputSignature(name: "x", dtype: .float, shape: [nil, 2])
    let closure: CustomPreprocess = { paths, _ in
        Tensor(shape: [paths.count, 2], floats: paths.flatMap { p in [Float(try! String(contentsOfFile: p, encoding: .utf8))!, -1] })
    }
    let a = try Fixtures.all(try CalibrationDataset(signatures: [sig], config: DatasetConfig(inputs: [InputConfig(name: "x", source: .files(files))], batchSize: 2), custom: ["x": closure]))
    #expect(a.map { $0.tensors["x"]!.floats() } == [[0, -1, 1, -1], [2, -1]])
    let py = try Fixtures.write("""
        import numpy as np
        def pre(path_list, input_parameters):
            assert input_parameters["input_name"] == "x"
            return np.array([[float(open(p).read()), len(path_list)] for p in path_list])
        """, dir.appendingPathComponent("prep.py"))
    var cfg = DatasetConfig(inputs: [InputConfig(name: "x", source: .files(files), preprocessFile: "\(py):pre")], batchSize: 2)
    cfg.python = Fixtures.python
    let b = try Fixtures.all(try CalibrationDataset(signatures: [sig], config: cfg))
    #expect(b.map { $0.tensors["x"]!.floats() } == [[0, 2, 1, 2], [2, 1]])
}

@Test func configurationDecodesFromJSON() throws {
    let json = """
        {"inputs": [{"name": "data", "source": {"list": "cal.txt"}, "fileType": "img",
                     "image": {"colorFormat": "rgb", "mean": [1, 2, 3], "resize": "area"}}],
         "batchSize": 4, "steps": 10}
        """
    let cfg = try JSONDecoder().decode(DatasetConfig.self, from: Data(json.utf8))
    #expect(cfg.batchSize == 4 && cfg.steps == 10 && cfg.prefetch == 2 && cfg.nonFinite == .warn)
    #expect(cfg.inputs[0].source == .list("cal.txt") && cfg.inputs[0].fileType == .image)
    #expect(cfg.inputs[0].image?.resize == .area && cfg.inputs[0].image?.std == [] && cfg.inputs[0].image?.scale == 1)
    let again = try JSONDecoder().decode(DatasetConfig.self, from: try JSONEncoder().encode(cfg))
    #expect(again == cfg)
    let random = try JSONDecoder().decode(InputSource.self, from: Data("\"random\"".utf8))
    #expect(random == .random)
}
