import Foundation
import QuantCore
import QuantExecutor
import QuantIR
import QuantONNX
import Testing

/// The ONNX backend node test suite (1884 cases written by scripts/gen-onnx-tests.py): every
/// case whose operators the executor registers must pass within the case's own tolerances,
/// unless skiplist.txt names it with a reason.
@Test func onnxNodeSuite() throws {
    let dir = Suite.cache.appendingPathComponent("onnx-tests/node")
    let manifestData = try Data(contentsOf: dir.appendingPathComponent("manifest.json"))
    let manifest = try JSONDecoder().decode([String: Suite.CaseInfo].self, from: manifestData)
    try #require(manifest.count == 1884, "run scripts/test.sh to generate the node suite")
    let skips = try Suite.skipList()
    var passed = 0, failed = 0, skipped = 0
    var failures: [String] = []
    var missingOps: [String: Int] = [:]
    var nonTensor = 0
    for name in manifest.keys.sorted() {
        let info = manifest[name]!
        if let reason = skips.reason(for: name) {
            _ = reason
            skipped += 1
            continue
        }
        let model = try Model.load(path: dir.appendingPathComponent("\(name)/model.onnx").path)
        // The executor runs tensors only: sequence, map and optional values are out of scope.
        if (model.graph.inputs + model.graph.outputs).contains(where: { $0.tensorType == nil }) {
            nonTensor += 1
            skipped += 1
            continue
        }
        let unsupported = model.graph.allNodes.filter { !KernelRegistry.standard.supports(domain: $0.domain, op: $0.opType) }
        if !unsupported.isEmpty {
            for op in Set(unsupported.map(\.opType)) { missingOps[op, default: 0] += 1 }
            skipped += 1
            continue
        }
        do {
            try Suite.runCase(model: model, dir: dir.appendingPathComponent(name), rtol: info.rtol, atol: info.atol)
            passed += 1
        } catch {
            failed += 1
            failures.append("\(name): \(error)")
        }
    }
    for f in failures.prefix(60) { print("FAIL \(f)") }
    if !missingOps.isEmpty {
        print("node suite: operators not implemented (cases): " + missingOps.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }
    print("node suite: \(nonTensor) cases skipped for sequence/map/optional inputs or outputs")
    print("node suite: \(passed) passed, \(failed) failed, \(skipped) skipped")
    #expect(failed == 0, "\(failures.prefix(20).joined(separator: "\n"))")
}

/// The light_* architectures shipped in the onnx wheel match their reference outputs.
@Test(arguments: ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet", "vgg19", "zfnet512"])
func lightModel(_ name: String) throws {
    let dir = Suite.cache.appendingPathComponent("onnx-tests/light/\(name)")
    let model = try Model.load(path: dir.appendingPathComponent("model.onnx").path)
    try Suite.runCase(model: model, dir: dir, rtol: name == "densenet121" ? 2e-3 : 1e-3, atol: 1e-7)
}

enum Suite {
    static let cache = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".cache")

    struct CaseInfo: Decodable {
        let rtol: Double
        let atol: Double
        let ops: [String]
    }

    struct SkipList {
        var exact: [String: String] = [:]
        var prefixes: [(String, String)] = []
        func reason(for name: String) -> String? {
            exact[name] ?? prefixes.first { name.hasPrefix($0.0) }?.1
        }
    }

    /// skiplist.txt: `case_name  reason` per line; a name ending in `*` is a prefix. Every
    /// entry must give a reason.
    static func skipList() throws -> SkipList {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("skiplist.txt")
        var list = SkipList()
        for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            let parts = t.split(separator: " ", maxSplits: 1).map(String.init)
            precondition(parts.count == 2 && !parts[1].trimmingCharacters(in: .whitespaces).isEmpty, "skip entry without a reason: \(t)")
            if parts[0].hasSuffix("*") { list.prefixes.append((String(parts[0].dropLast()), parts[1])) } else { list.exact[parts[0]] = parts[1] }
        }
        return list
    }

    struct Mismatch: Error, CustomStringConvertible {
        let description: String
    }

    static func runCase(model: Model, dir: URL, rtol: Double, atol: Double) throws {
        let executor = try Executor(model: model, options: ExecutorOptions(threads: 2))
        let fm = FileManager.default
        let sets = try fm.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("test_data_set_") }.sorted()
        for set in sets {
            let sdir = dir.appendingPathComponent(set)
            var feeds: [String: Tensor] = [:]
            for (k, name) in executor.inputNames.enumerated() {
                let p = sdir.appendingPathComponent("input_\(k).pb").path
                feeds[name] = try TensorProtoCodec.decode(ModelFile.readTensor(path: p), store: nil)
            }
            let out = try executor.run(feeds)
            for (k, vi) in model.graph.outputs.enumerated() {
                let expected = try TensorProtoCodec.decode(ModelFile.readTensor(path: sdir.appendingPathComponent("output_\(k).pb").path), store: nil)
                guard let got = out[vi.name] else { throw Mismatch(description: "output '\(vi.name)' missing") }
                try compare(got, expected, rtol: rtol, atol: atol, name: vi.name)
            }
        }
    }

    /// numpy.testing.assert_allclose semantics: |got - want| <= atol + rtol * |want|, NaN equal
    /// to NaN, infinities equal when equal.
    static func compare(_ got: Tensor, _ want: Tensor, rtol: Double, atol: Double, name: String) throws {
        guard got.shape == want.shape else {
            throw Mismatch(description: "'\(name)' shape \(got.shape), expected \(want.shape)")
        }
        guard ComputeType.internalType(got.dtype) == ComputeType.internalType(want.dtype) else {
            throw Mismatch(description: "'\(name)' type \(got.dtype), expected \(want.dtype)")
        }
        if want.dtype == .string {
            if got.strings != want.strings { throw Mismatch(description: "'\(name)' strings differ") }
            return
        }
        let exact = !want.dtype.isFloatingPoint
        var bad = 0
        var first = ""
        for i in 0..<want.count {
            let a = got.scalarAsDouble(at: i), b = want.scalarAsDouble(at: i)
            let ok: Bool
            if a.isNaN || b.isNaN { ok = a.isNaN && b.isNaN } else if a.isInfinite || b.isInfinite { ok = a == b } else if exact { ok = a == b } else { ok = abs(a - b) <= atol + rtol * abs(b) }
            if !ok {
                if bad == 0 { first = "at \(i): \(a) vs \(b)" }
                bad += 1
            }
        }
        if bad > 0 { throw Mismatch(description: "'\(name)' \(bad)/\(want.count) elements differ, first \(first)") }
    }
}
