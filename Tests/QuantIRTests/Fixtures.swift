import Foundation
import QuantCore
import QuantIR
import Testing

/// Paths of the repository and its git-ignored cache (filled by scripts/fetch-models.sh and
/// scripts/gen-onnx-tests.py, which the README's test command runs first).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let cache = root.appendingPathComponent(".cache")

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qk-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Every cached model: real models, light architectures and node-suite models.
    static func cachedModels() throws -> [String] {
        let fm = FileManager.default
        var out: [String] = []
        let models = cache.appendingPathComponent("models").path
        for f in (try? fm.contentsOfDirectory(atPath: models)) ?? [] where f.hasSuffix(".onnx") { out.append(models + "/" + f) }
        for suite in ["light", "node"] {
            let dir = cache.appendingPathComponent("onnx-tests/\(suite)").path
            for c in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] {
                let p = dir + "/" + c + "/model.onnx"
                if fm.fileExists(atPath: p) { out.append(p) }
            }
        }
        return out.sorted()
    }

    /// A small graph:
    ///
    ///     x ─ Conv(W, B) ─ c ─ Relu ─ r ─ Add(k) ─ y
    ///
    /// with W [2,1,1,1], B [2], k a Constant node.
    static func tinyModel() -> Model {
        let g = Graph(name: "tiny")
        g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.param("N"), .value(1), .value(4), .value(4)]))]
        g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))]
        g.setInitializer("W", Tensor(shape: [2, 1, 1, 1], floats: [1, -2]))
        g.setInitializer("B", Tensor(shape: [2], floats: [0.5, 0.25]))
        let constant = Node(name: "k", opType: "Constant", inputs: [], outputs: ["k"], attributes: [.tensor("value", Tensor(shape: [1], floats: [3]))])
        g.nodes = [
            constant,
            Node(name: "conv", opType: "Conv", inputs: ["x", "W", "B"], outputs: ["c"], attributes: [.ints("kernel_shape", [1, 1])]),
            Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["r"]),
            Node(name: "add", opType: "Add", inputs: ["r", "k"], outputs: ["y"]),
        ]
        return Model(graph: g, opsets: ["": 17])
    }
}
