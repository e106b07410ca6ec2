import Foundation
import QuantKit
import Testing

/// A valid small model, as a proto, to break in various ways:
///
///     x ─ Add(W) ─ y        W: float[64] initializer
func validModelProto() -> Onnx_ModelProto {
    var m = Onnx_ModelProto()
    m.irVersion = 8
    m.producerName = "test"
    var op = Onnx_OperatorSetIdProto()
    op.version = 17
    m.opsetImport = [op]
    var g = Onnx_GraphProto()
    g.name = "g"
    var n = Onnx_NodeProto()
    n.opType = "Add"
    n.input = ["x", "W"]
    n.output = ["y"]
    g.node = [n]
    var w = Onnx_TensorProto()
    w.name = "W"
    w.dims = [64]
    w.dataType = DType.float.rawValue
    w.rawData = Data((0..<64).flatMap { withUnsafeBytes(of: Float($0)) { Array($0) } })
    g.initializer = [w]
    func vi(_ name: String) -> Onnx_ValueInfoProto {
        var v = Onnx_ValueInfoProto()
        v.name = name
        var t = Onnx_TypeProto.Tensor()
        t.elemType = 1
        var s = Onnx_TensorShapeProto()
        var d = Onnx_TensorShapeProto.Dimension()
        d.dimValue = 64
        s.dim = [d]
        t.shape = s
        v.type.tensorType = t
        return v
    }
    g.input = [vi("x")]
    g.output = [vi("y")]
    m.graph = g
    return m
}

struct BrokenCase: CustomTestStringConvertible, Sendable {
    let name: String
    let codes: Set<String>
    /// Writes the broken file(s) into the folder and returns the model path to pass.
    let make: @Sendable (URL) throws -> String
    var testDescription: String { name }
}

func writeModel(_ m: Onnx_ModelProto, _ dir: URL, _ name: String = "m.onnx") throws -> String {
    let p = dir.appendingPathComponent(name).path
    try (m.serializedBytes() as Data).write(to: URL(fileURLWithPath: p))
    return p
}

func writeBytes(_ bytes: [UInt8], _ dir: URL, _ name: String = "m.onnx") throws -> String {
    let p = dir.appendingPathComponent(name).path
    try Data(bytes).write(to: URL(fileURLWithPath: p))
    return p
}

/// A model whose W lives in `w.bin`, with `edit` applied to the external entries.
func externalModel(_ dir: URL, fileBytes: Int = 256, edit: (inout [String: String]) -> Void) throws -> String {
    var m = validModelProto()
    var w = m.graph.initializer[0]
    try w.rawData.write(to: dir.appendingPathComponent("w.bin"))
    if fileBytes < 256 { try w.rawData.prefix(fileBytes).write(to: dir.appendingPathComponent("w.bin")) }
    w.clearRawData()
    w.dataLocation = .external
    var kv = ["location": "w.bin", "offset": "0", "length": "256"]
    edit(&kv)
    w.externalData = kv.sorted { $0.key < $1.key }.map { k, v in
        var e = Onnx_StringStringEntryProto()
        e.key = k
        e.value = v
        return e
    }
    m.graph.initializer = [w]
    return try writeModel(m, dir)
}

func editedTensor(_ dir: URL, _ edit: (inout Onnx_TensorProto) -> Void) throws -> String {
    var m = validModelProto()
    edit(&m.graph.initializer[0])
    return try writeModel(m, dir)
}

let validBytes: [UInt8] = Array(try! validModelProto().serializedBytes() as Data)

func truncated(at fraction: Double) -> BrokenCase {
    BrokenCase(name: "truncated at \(Int(fraction * 100))%", codes: ["QK1004", "QK1006"]) { dir in
        try writeBytes(Array(validBytes.prefix(Int(Double(validBytes.count) * fraction))), dir)
    }
}

func randomBytes(seed: UInt64) -> BrokenCase {
    BrokenCase(name: "random bytes seed \(seed)", codes: ["QK1003", "QK1004", "QK1006"]) { dir in
        var rng = SplitMix(seed: seed)
        return try writeBytes((0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, dir)
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func magic(_ name: String, _ bytes: [UInt8]) -> BrokenCase {
    BrokenCase(name: "\(name) file", codes: ["QK1003"]) { dir in try writeBytes(bytes + [UInt8](repeating: 7, count: 64), dir) }
}

let brokenCases: [BrokenCase] = [
    BrokenCase(name: "empty file", codes: ["QK1002"]) { dir in try writeBytes([], dir) },
    BrokenCase(name: "missing file", codes: ["QK1001"]) { dir in dir.appendingPathComponent("absent.onnx").path },
    BrokenCase(name: "a directory", codes: ["QK1001"]) { dir in dir.path },
    truncated(at: 0.1), truncated(at: 0.35), truncated(at: 0.5), truncated(at: 0.77), truncated(at: 0.95),
    randomBytes(seed: 1), randomBytes(seed: 2), randomBytes(seed: 3),
    magic("PNG", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
    magic("JPEG", [0xFF, 0xD8, 0xFF, 0xE0]),
    magic("ZIP (PyTorch checkpoint)", [0x50, 0x4B, 0x03, 0x04]),
    magic("NumPy", [0x93] + Array("NUMPY".utf8)),
    magic("gzip", [0x1F, 0x8B, 0x08]),
    magic("JSON", Array("{\"model\": 1}".utf8)),
    magic("pickle", [0x80, 0x04, 0x95]),
    magic("TFLite", [0x1C, 0, 0, 0] + Array("TFL3".utf8)),
    magic("OpenVINO XML", Array("<?xml version=\"1.0\"?>".utf8)),
    BrokenCase(name: "a TensorProto, not a model", codes: ["QK1004", "QK1006"]) { dir in
        try writeBytes(Array(try validModelProto().graph.initializer[0].serializedBytes() as Data), dir)
    },
    BrokenCase(name: "no opset imports", codes: ["QK1006"]) { dir in
        var m = validModelProto()
        m.opsetImport = []
        return try writeModel(m, dir)
    },
    BrokenCase(name: "no graph", codes: ["QK1006"]) { dir in
        var m = validModelProto()
        m.clearGraph()
        return try writeModel(m, dir)
    },
    BrokenCase(name: "external data file missing", codes: ["QK1007"]) { dir in
        try externalModel(dir) { $0["location"] = "gone.bin" }
    },
    BrokenCase(name: "external offset past end of file", codes: ["QK1008"]) { dir in
        try externalModel(dir) { $0["offset"] = "4096" }
    },
    BrokenCase(name: "external data file truncated", codes: ["QK1008"]) { dir in
        try externalModel(dir, fileBytes: 100) { _ in }
    },
    BrokenCase(name: "external length disagrees with shape", codes: ["QK1008"]) { dir in
        try externalModel(dir) { $0["length"] = "128" }
    },
    BrokenCase(name: "external location escapes the folder", codes: ["QK1008"]) { dir in
        try externalModel(dir) { $0["location"] = "../w.bin" }
    },
    BrokenCase(name: "external offset not a number", codes: ["QK1008"]) { dir in
        try externalModel(dir) { $0["offset"] = "ten" }
    },
    BrokenCase(name: "raw_data shorter than shape", codes: ["QK1103"]) { dir in
        try editedTensor(dir) { $0.rawData = $0.rawData.prefix(100) }
    },
    BrokenCase(name: "float_data count wrong", codes: ["QK1103"]) { dir in
        try editedTensor(dir) { t in
            t.clearRawData()
            t.floatData = [1, 2, 3]
        }
    },
    BrokenCase(name: "unknown data type", codes: ["QK1103"]) { dir in
        try editedTensor(dir) { $0.dataType = 99 }
    },
    BrokenCase(name: "negative dimension", codes: ["QK1103"]) { dir in
        try editedTensor(dir) { $0.dims = [-64] }
    },
]

@Test(arguments: brokenCases)
func brokenFileGivesCodedError(_ c: BrokenCase) throws {
    let dir = try CLI.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = try c.make(dir)
    let r = try CLI.run(["inspect", path])
    #expect(!r.crashed, "crashed: \(r.stderr)")
    #expect(r.status == 2, "exit \(r.status): \(r.stdout) \(r.stderr)")
    let code = r.stderr.firstMatch(of: try Regex("QK[0-9]{4}")).map { String(r.stderr[$0.range]) }
    #expect(code.map(c.codes.contains) == true, "got \(code ?? "no code") in: \(r.stderr)")
    let fileName = URL(fileURLWithPath: path).lastPathComponent
    #expect(r.stderr.contains(fileName) || r.stderr.contains("w.bin") || r.stderr.contains("gone.bin"), "names the file: \(r.stderr)")
}

@Test func validModelInspectsAndVerifies() throws {
    let dir = try CLI.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = try writeModel(validModelProto(), dir)
    let r = try CLI.run(["inspect", path, "--verify"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("Add                      1"))
    #expect(r.stdout.contains("parameters 64 in 1 initializers"))
    #expect(r.stdout.contains("verify     ok"))
    // The same model with external data loads the same numbers.
    let ext = try externalModel(dir) { _ in }
    let e = try CLI.run(["inspect", ext, "--json"])
    #expect(e.status == 0, "\(e.stderr)")
    #expect(e.stdout.contains("\"externalDataFiles\" : [\n    \"w.bin\"\n  ]"))
}

@Test func verifyFailsOnStructuralErrors() throws {
    let dir = try CLI.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    var m = validModelProto()
    m.graph.node[0].input = ["x", "undefined_value"]
    let path = try writeModel(m, dir)
    let r = try CLI.run(["inspect", path, "--verify"])
    #expect(r.status == 2)
    #expect(r.stdout.contains("QK1201") && r.stdout.contains("undefined_value"))
}

@Test func convertRefusesToOverwriteItsInput() throws {
    let dir = try CLI.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = try writeModel(validModelProto(), dir)
    let before = try Data(contentsOf: URL(fileURLWithPath: path))
    let r = try CLI.run(["convert", path, path])
    #expect(r.status == 2 && r.stderr.contains("QK7001"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
}
