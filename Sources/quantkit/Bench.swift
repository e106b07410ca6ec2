import ArgumentParser
import Foundation
import QuantData
import QuantKit
#if canImport(Glibc)
import Glibc
#endif

/// `quantkit bench`: times the executor on a model (hidden; used by Benchmarks/ and the interop
/// tests until `quantkit run` exists).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the float executor on a model with random (or given) inputs; prints JSON.",
        discussion: """
            Symbolic dimensions are filled as follows: dimension 0 is --batch; a dimension named by \
            --dim NAME=VALUE (the symbol's name) or --dim INDEX=VALUE (its position, any input) takes \
            VALUE; other unknown dimensions of rank-4 inputs are 224; the rest are 1. Random float \
            inputs are uniform in [-1, 1) (seeded); integer inputs are 0.

            --save-outputs DIR writes each graph output k as DIR/output_k.bin (raw little-endian \
            float32, C order) and DIR/outputs.json ([{"name", "file", "shape"}]) after the last run. \
            --input-npy [NAME=]FILE feeds a .npy file (float32 or int64, C order) instead of random \
            data; without NAME it feeds the first input.

            The output JSON has mean_ms and min_ms per run, ms_per_image (mean / batch) and \
            peak_rss_mb (the process's peak resident set). --profile adds ops_ms: milliseconds per \
            timed run spent in each operator type (fused steps under labels such as "Conv+Clip"). Set OPENBLAS_CORETYPE before starting \
            the process where scripts/openblas-coretype.sh prints a value.
            """,
        shouldDisplay: false)

    @Argument(help: "The .onnx model file.")
    var model: String

    @Option(help: "Batch size (dimension 0 of every input).")
    var batch = 1

    @Option(help: "Executor threads.")
    var threads = 2

    @Option(help: "Timed runs after one warm-up run.")
    var iterations = 10

    @Option(name: .customLong("dim"), help: "NAME=VALUE or INDEX=VALUE for a symbolic dimension (repeatable).")
    var dims: [String] = []

    @Option(name: .customLong("input-npy"), help: "[NAME=]FILE.npy to feed instead of random data (repeatable).")
    var inputNpy: [String] = []

    @Option(name: .customLong("save-outputs"), help: "Directory to write the outputs of the last run to.")
    var saveOutputs: String?

    @Flag(help: "Report the time per operator type (ops_ms in the JSON).")
    var profile = false

    @Option(help: "Seed of the random inputs.")
    var seed: UInt64 = 1

    func run() throws {
        try reportingErrors {
            let m = try Model.load(path: model)
            let executor = try Executor(model: m, options: ExecutorOptions(threads: threads))
            var byName: [String: Int] = [:], byIndex: [Int: Int] = [:]
            for d in dims {
                let parts = d.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let v = Int(parts[1]) else { throw ValidationError("--dim expects NAME=VALUE, got '\(d)'") }
                if let i = Int(parts[0]) { byIndex[i] = v } else { byName[parts[0]] = v }
            }
            var given: [String: Tensor] = [:]
            for (k, spec) in inputNpy.enumerated() {
                let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
                let name = parts.count == 2 ? parts[0] : (k == 0 ? executor.inputNames.first ?? "" : "")
                given[name] = try Npy.read(path: parts.last!)
            }
            var rng = SplitMix64(seed: seed)
            var feeds: [String: Tensor] = [:]
            for name in executor.inputNames {
                if let t = given[name] { feeds[name] = t; continue }
                let info = m.graph.inputs.first { $0.name == name }
                let dimsOf = info?.tensorType?.shape ?? []
                let shape: [Int] = dimsOf.enumerated().map { i, d in
                    if let v = d.intValue, v > 0 { return v }
                    if case .param(let p) = d, let v = byName[p] { return v }
                    if let v = byIndex[i] { return v }
                    if i == 0 { return batch }
                    return dimsOf.count == 4 ? 224 : 1
                }
                let dtype = info?.tensorType?.elementType ?? .float
                if dtype == .float || dtype == .float16 || dtype == .double || dtype == .bfloat16 {
                    let t = Tensor.makeFloat(shape) { p in for i in 0..<p.count { p[i] = Float(rng.unit()) * 2 - 1 } }
                    feeds[name] = ComputeType.restore(t, to: dtype)
                } else {
                    feeds[name] = Tensor(dtype: dtype, shape: shape)
                }
            }
            var outputs = try executor.run(feeds)  // warm-up
            var times: [Double] = []
            let opProfile = profile ? ExecutionProfile() : nil
            for _ in 0..<max(iterations, 0) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                outputs = try executor.run(feeds, profile: opProfile)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            if let dir = saveOutputs { try save(outputs, names: executor.outputNames, to: dir) }
            let mean = times.isEmpty ? 0 : times.reduce(0, +) / Double(times.count)
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            var report: [String: Any] = [
                "model": model, "batch": batch, "threads": threads, "iterations": times.count,
                "input_shapes": Dictionary(uniqueKeysWithValues: feeds.map { ($0.key, $0.value.shape) }),
                "mean_ms": mean, "min_ms": times.min() ?? 0, "ms_per_image": mean / Double(max(batch, 1)),
                "peak_rss_mb": Double(usage.ru_maxrss) / 1024,
                "openblas_coretype": ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "",
            ]
            if let opProfile, !times.isEmpty {
                report["ops_ms"] = opProfile.nanoseconds.mapValues { Double($0) / 1e6 / Double(times.count) }
            }
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    func save(_ outputs: [String: Tensor], names: [String], to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var index: [[String: Any]] = []
        for (k, name) in names.enumerated() {
            guard let t0 = outputs[name] else { continue }
            let t = ComputeType.normalize(t0)
            let floats = t.floats()
            let file = "output_\(k).bin"
            try floats.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: dir).appendingPathComponent(file), options: .atomic)
            index.append(["name": name, "file": file, "shape": t.shape])
        }
        let data = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: dir).appendingPathComponent("outputs.json"), options: .atomic)
    }
}
