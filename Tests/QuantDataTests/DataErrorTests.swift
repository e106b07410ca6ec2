import Foundation
import QuantCore
import Testing
@testable import QuantData

/// Every QK21xx code, triggered for real, with the message checked.
private struct Env {
    let dir: URL
    init() throws { dir = try Fixtures.temporaryDirectory() }
    func path(_ p: String) -> URL { dir.appendingPathComponent(p) }
    func npy(_ t: Tensor, _ name: String) throws -> String { try Fixtures.writeNpy(t, path(name)) }
    func stream(_ sigs: [InputSignature], _ cfg: DatasetConfig) -> QuantKitError? {
        Fixtures.error { _ = try Fixtures.all(try CalibrationDataset(signatures: sigs, config: cfg)) }
    }
}

private let x = InputSignature(name: "x", dtype: .float, shape: [nil, 2])

@Test func qk2101InputCountDiffersFromModel() throws {
    let two = [x, InputSignature(name: "y", dtype: .float, shape: [nil, 2])]
    let e = try Env().stream(two, DatasetConfig(inputs: [InputConfig(name: "x", source: .random)]))
    #expect(e?.code == "QK2101")
    #expect(e?.message == "the model has 2 input(s) ('x', 'y') but the calibration data configures 1 ('x')")
}

@Test func qk2102UnknownInputName() throws {
    let e = try Env().stream([x], DatasetConfig(inputs: [InputConfig(name: "images", source: .random)]))
    #expect(e?.code == "QK2102" && e!.message.contains("'images' is not an input of the model ('x')"))
}

@Test func qk2103NoItemsFound() throws {
    let env = try Env()
    try FileManager.default.createDirectory(at: env.path("empty"), withIntermediateDirectories: true)
    let e = env.stream([x], DatasetConfig(inputs: [InputConfig(name: "x", source: .folder(env.path("empty").path))]))
    #expect(e?.code == "QK2103")
    #expect(e!.message.hasPrefix("calibration input 'x' finds 0 items in '\(env.path("empty").path)'"))
}

@Test func qk2104ShapeMismatchNamesTheDimension() throws {
    let env = try Env()
    let sig = InputSignature(name: "data", dtype: .float, shape: [1, 3, 4, 4])
    let file = try env.npy(Tensor(dtype: .float, shape: [128, 3, 4, 4]), "img/0001.npy")
    let e = env.stream([sig], DatasetConfig(inputs: [InputConfig(name: "data", source: .files([file]))]))
    #expect(e?.description == "QK2104 input 'data' expects shape [1,3,4,4] but calibration file '\(file)' has [128,3,4,4] (batch dimension 0 differs); make the batch dimension match or declare it symbolic")
    let other = try env.npy(Tensor(dtype: .float, shape: [1, 3, 5, 4]), "img/0002.npy")
    let e2 = env.stream([sig], DatasetConfig(inputs: [InputConfig(name: "data", source: .files([other]))]))
    #expect(e2?.code == "QK2104" && e2!.message.contains("(dimension 2 differs)"))
}

@Test func qk2105FloatDataForAnIntegerInput() throws {
    let env = try Env()
    let f = try env.npy(Tensor(shape: [1, 2], floats: [1, 2]), "ids.npy")
    let e = env.stream([InputSignature(name: "ids", dtype: .int64, shape: [nil, 2])], DatasetConfig(inputs: [InputConfig(name: "ids", source: .files([f]))]))
    #expect(e?.code == "QK2105" && e!.message == "input 'ids' expects int64 but calibration file '\(f)' holds float")
}

@Test func qk2106ListsOfDifferentLengths() throws {
    let env = try Env()
    let a = try env.npy(Tensor(shape: [2], floats: [1, 2]), "a.npy")
    let l1 = try Fixtures.write("a.npy\na.npy\n", env.path("one.txt")), l2 = try Fixtures.write("a.npy\n", env.path("two.txt"))
    _ = a
    let y = InputSignature(name: "y", dtype: .float, shape: [nil, 2])
    let e = env.stream([x, y], DatasetConfig(inputs: [InputConfig(name: "x", source: .list(l1)), InputConfig(name: "y", source: .list(l2))]))
    #expect(e?.code == "QK2106" && e!.message.contains("'x' has 2, 'y' has 1"))
}

@Test func qk2107UnsupportedFileType() throws {
    let env = try Env()
    let f = try Fixtures.write("hello", env.path("notes.csv"))
    let e = env.stream([x], DatasetConfig(inputs: [InputConfig(name: "x", source: .files([f]))]))
    #expect(e?.code == "QK2107" && e!.message.contains("'\(f)'") && e!.message.contains("unknown extension"))
}

@Test func qk2108CorruptFiles() throws {
    let env = try Env()
    let png = env.path("broken.png")
    try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]).write(to: png)
    let img = InputSignature(name: "x", dtype: .float, shape: [nil, 3, 4, 4])
    let e = env.stream([img], DatasetConfig(inputs: [InputConfig(name: "x", source: .files([png.path]))]))
    #expect(e?.code == "QK2108" && e!.message.contains("broken.png") && e!.message.contains("corrupt PNG"))
    let npy = env.path("cut.npy")
    try Data(Npy.encode(Tensor(shape: [1, 2], floats: [1, 2]))!.dropLast(3)).write(to: npy)
    let e2 = env.stream([x], DatasetConfig(inputs: [InputConfig(name: "x", source: .files([npy.path]))]))
    #expect(e2?.code == "QK2108" && e2!.message.contains("cut.npy"))
    let jpg = env.path("cut.jpg")
    try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 16]).write(to: jpg)
    #expect(env.stream([img], DatasetConfig(inputs: [InputConfig(name: "x", source: .files([jpg.path]))]))?.code == "QK2108")
}

@Test func qk2109ListNamesAMissingFile() throws {
    let env = try Env()
    let l = try Fixtures.write("# header\nmissing/0001.npy\n", env.path("cal.txt"))
    let e = env.stream([x], DatasetConfig(inputs: [InputConfig(name: "x", source: .list(l))]))
    #expect(e?.code == "QK2109" && e!.message == "list file '\(l)' line 2 names 'missing/0001.npy', which does not exist")
}

@Test func qk2110NonFiniteValuesWarnOrFail() throws {
    let env = try Env()
    let f = try env.npy(Tensor(shape: [1, 2], floats: [.nan, .infinity]), "bad.npy")
    let cfg = DatasetConfig(inputs: [InputConfig(name: "x", source: .files([f]))])
    let ds = try CalibrationDataset(signatures: [x], config: cfg)
    #expect(try Fixtures.all(ds).count == 1)
    #expect(ds.report.nonFiniteValues == ["x": 2] && ds.report.warnings.map(\.code) == ["QK2110"])
    var failing = cfg
    failing.nonFinite = .fail
    let e = env.stream([x], failing)
    #expect(e?.code == "QK2110" && e!.message.contains("holds 2 NaN/Inf value(s)") && e!.message.contains("bad.npy"))
}

@Test func qk2111InvalidConfiguration() throws {
    let env = try Env()
    #expect(env.stream([x], DatasetConfig(inputs: [InputConfig(name: "x", source: .random)], batchSize: 0))?.code == "QK2111")
    let img = InputSignature(name: "x", dtype: .float, shape: [nil, 3, 4, 4])
    let e = env.stream([img], DatasetConfig(inputs: [InputConfig(name: "x", source: .random, image: ImagePreprocessing(mean: [1, 2]))]))
    #expect(e?.code == "QK2111" && e!.message.contains("mean has 2 values for 3 channel(s)"))
    let fixed = InputSignature(name: "x", dtype: .float, shape: [1, 2])
    let e2 = env.stream([fixed], DatasetConfig(inputs: [InputConfig(name: "x", source: .random)], batchSize: 4))
    #expect(e2?.code == "QK2111" && e2!.message.contains("fixed at 1"))
    let e3 = env.stream([x], DatasetConfig(inputs: [InputConfig(name: "x", source: .random, preprocessFile: "prep.py")]))
    #expect(e3?.code == "QK2111" && e3!.message.contains("not 'file.py:function'"))
}

@Test func qk2112PreprocessingFails() throws {
    let env = try Env()
    let f = try env.npy(Tensor(shape: [1, 2], floats: [1, 2]), "a.npy")
    let py = try Fixtures.write("def pre(paths, params):\n    raise ValueError('cannot open ' + paths[0])\n", env.path("p.py"))
    var cfg = DatasetConfig(inputs: [InputConfig(name: "x", source: .files([f]), preprocessFile: "\(py):pre")])
    cfg.python = Fixtures.python
    let e = env.stream([x], cfg)
    #expect(e?.code == "QK2112" && e!.message.contains("ValueError: cannot open"))
    struct Boom: Error {}
    let closure: CustomPreprocess = { _, _ in throw Boom() }
    let e2 = Fixtures.error { _ = try Fixtures.all(try CalibrationDataset(signatures: [x], config: DatasetConfig(inputs: [InputConfig(name: "x", source: .files([f]))]), custom: ["x": closure])) }
    #expect(e2?.code == "QK2112" && e2!.message.contains("'closure' for input 'x'"))
}

@Test func qk2113MalformedOrMissingListFile() throws {
    let env = try Env()
    let e = env.stream([x], DatasetConfig(inputs: [InputConfig(name: "x", source: .list(env.path("nope.txt").path))]))
    #expect(e?.code == "QK2113" && e!.message.contains("nope.txt") && e!.message.contains("does not exist"))
}

@Test func qk2114PartialBatchOfAFixedBatchInputIsReported() throws {
    let env = try Env()
    let files = try (0..<3).map { try env.npy(Tensor(shape: [2], floats: [Float($0), 0]), "\($0).npy") }
    let fixed = InputSignature(name: "x", dtype: .float, shape: [2, 2])
    let ds = try CalibrationDataset(signatures: [fixed], config: DatasetConfig(inputs: [InputConfig(name: "x", source: .files(files))], batchSize: 2))
    #expect(try Fixtures.all(ds).count == 1)
    #expect(ds.report.warnings.map(\.code) == ["QK2114"] && ds.report.warnings[0].message.contains("the last 1 item(s)"))
}

@Test func qk2115RandomItemOverTheBudgetOrOverflowing() throws {
    let big = InputSignature(name: "x", dtype: .float, shape: [1, 3, 1000, 1000])
    var cfg = DatasetConfig(inputs: [InputConfig(name: "x", source: .random)])
    cfg.limits.maxItemBytes = 1 << 20  // 12 MB needed
    let e = try Env().stream([big], cfg)
    #expect(e?.code == "QK2115")
    #expect(e?.message == "calibration input 'x': a random item of the declared shape [1,3,1000,1000] of float needs 12000000 bytes, above the limit of 1048576")
    let huge = InputSignature(name: "x", dtype: .float, shape: [1 << 62, 3, 8, 8])
    let o = try Env().stream([huge], DatasetConfig(inputs: [InputConfig(name: "x", source: .random)]))
    #expect(o?.code == "QK2115" && o!.message.contains("needs more bytes than memory can address"))
    // The limits decode from a DatasetConfig file, defaults kept for what it leaves out.
    let decoded = try JSONDecoder().decode(DatasetConfig.self, from: Data(#"{"inputs": [], "limits": {"maxImagePixels": 7}}"#.utf8))
    #expect(decoded.limits == DataLimits(maxImagePixels: 7, maxItemBytes: 2 << 30))
}
