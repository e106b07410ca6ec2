import Foundation
import QuantExecutor

/// Chooses a representative subset of a large calibration set (Icraft `autoqset_num`,
/// `--auto-subset N`): every item runs once through the float model, each gives a small
/// feature vector (per-channel means of the input and of a few layers spread over the network,
/// and the mean magnitude of each), features are standardized across items, and greedy k-center
/// (farthest-point) selection picks N items: first the one nearest the mean, then each time the
/// item farthest from those already chosen (Gonzalez 1985), which covers the spread of the data
/// instead of its bulk.
public struct CalibrationSubset {
    public struct Selection: Sendable {
        /// Chosen item positions in the original order of the data.
        public var indices: [Int]
        /// Items the data held.
        public var total: Int
        /// The chosen files per input (by input name), in the order chosen.
        public var files: [String: [String]]
        /// The lists written (`…_auto.txt`) per input.
        public var lists: [String: String] = [:]
    }

    /// Channels of one feature tensor kept (groups of neighbouring channels are averaged).
    static let channelsPerTensor = 32
    /// Layers (Conv/ConvTranspose/Gemm/MatMul outputs) observed, spread evenly over the model.
    static let layers = 4

    /// Runs every item of `data` (one at a time) through the float model at `modelPath` and
    /// chooses `count` of them (all of them when there are no more than `count`). Throws QK2117
    /// when an input's data is random or `count` is below 1.
    public static func choose(modelPath: String, data: DatasetConfig, count: Int, threads: Int,
                              progress: (StageProgress) -> Void = { _ in }) throws -> Selection {
        let model = try Quantizer.loadForCalibration(path: modelPath)
        if data.stream != nil {
            throw QuantKitError("QK2117", "--auto-subset \(count) needs files to choose from and to list, but the data arrives on a stream",
                                fix: "choose the subset in the producer (send those items only), or give folders or lists of files")
        }
        var config = data
        config.batchSize = 1
        config.steps = nil
        let dataset = try CalibrationDataset(signatures: CalibrationDataset.signatures(of: model.graph), config: config)
        let files = dataset.itemFiles
        if config.inputs.contains(where: { $0.source == .random }) || files.values.contains(where: \.isEmpty) {
            throw QuantKitError("QK2117", "--auto-subset \(count) needs items to choose from, but an input's data is random",
                                fix: "give folders or lists of files for every input, or drop --auto-subset")
        }
        guard count >= 1 else {
            throw QuantKitError("QK2117", "--auto-subset \(count) chooses no item", fix: "give a number of items of 1 or more, e.g. 32")
        }
        let total = dataset.itemCount
        if count >= total {
            return Selection(indices: Array(0..<total), total: total, files: files)
        }
        let probes = probeTensors(model.graph)
        let hook = FeatureHook(names: probes + model.graph.runtimeInputs.map(\.name))
        let executor = try Executor(model: model, options: ExecutorOptions(threads: threads))
        var features: [[Double]] = []
        let stream = dataset.makeStream()
        defer { stream.cancel() }
        while let b = try stream.next() {
            hook.reset()
            _ = try executor.run(b.tensors, hooks: [hook])
            features.append(hook.vector())
            progress(StageProgress(stage: "auto-subset", done: features.count, total: total, unit: "items"))
        }
        let chosen = kCenter(standardized(features), count: count)
        var picked: [String: [String]] = [:]
        for (name, list) in files { picked[name] = chosen.map { list[$0] } }
        return Selection(indices: chosen, total: total, files: picked)
    }

    /// Outputs of up to `layers` Conv/ConvTranspose/Gemm/MatMul nodes of the main graph, evenly
    /// spaced in graph order (the last one included).
    static func probeTensors(_ g: Graph) -> [String] {
        let compute = g.nodes.filter { ["Conv", "ConvTranspose", "Gemm", "MatMul"].contains($0.opType) }.compactMap(\.outputs.first)
        guard !compute.isEmpty else { return [] }
        let n = min(layers, compute.count)
        return (1...n).map { compute[($0 * compute.count) / n - 1] }
    }

    /// Each column scaled to zero mean and unit variance over the items (constant columns drop out).
    static func standardized(_ rows: [[Double]]) -> [[Double]] {
        guard let width = rows.map(\.count).max(), !rows.isEmpty else { return rows }
        let padded = rows.map { $0 + [Double](repeating: 0, count: width - $0.count) }
        var out = padded
        for j in 0..<width {
            let col = padded.map { $0[j] }
            let mean = col.reduce(0, +) / Double(col.count)
            let sd = (col.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(col.count)).squareRoot()
            for i in out.indices { out[i][j] = sd > 1e-12 && sd.isFinite ? (padded[i][j] - mean) / sd : 0 }
        }
        return out
    }

    /// Greedy k-center: the item nearest the centroid, then repeatedly the item farthest from
    /// the chosen ones (ties: the earlier item). Deterministic.
    static func kCenter(_ x: [[Double]], count: Int) -> [Int] {
        guard !x.isEmpty, count > 0 else { return [] }
        func d2(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } }
        let width = x[0].count
        let centroid = (0..<width).map { j in x.reduce(0) { $0 + $1[j] } / Double(x.count) }
        var first = 0
        for i in x.indices where d2(x[i], centroid) < d2(x[first], centroid) { first = i }
        var chosen = [first]
        var nearest = x.map { d2($0, x[first]) }
        while chosen.count < min(count, x.count) {
            var far = -1
            for i in x.indices where !chosen.contains(i) && (far < 0 || nearest[i] > nearest[far]) { far = i }
            chosen.append(far)
            for i in x.indices { nearest[i] = min(nearest[i], d2(x[i], x[far])) }
        }
        return chosen
    }

    /// Writes the chosen files of each input as `…_auto.txt` beside its source (a list
    /// `cal.txt` gives `cal_auto.txt`; a folder `imgs` gives `imgs_auto.txt` beside it; explicit
    /// files give `NAME_auto.txt` in the first file's folder), absolute paths, one per line, and
    /// returns the data configuration reading them.
    public static func write(_ selection: inout Selection, data: DatasetConfig) throws -> DatasetConfig {
        var d = data
        var batch = [(String, String)]()
        for k in d.inputs.indices {
            let name = d.inputs[k].name
            guard let chosen = selection.files[name] else { continue }
            let path: String
            switch d.inputs[k].source {
            case .list(let l): path = sibling(l, suffix: "_auto.txt", dropExtension: true)
            case .folder(let f): path = sibling(f, suffix: "_auto.txt", dropExtension: false)
            case .sharedList: path = sibling(d.sharedList ?? name, suffix: "_\(name)_auto.txt", dropExtension: true)
            default:
                let dir = URL(fileURLWithPath: chosen.first ?? ".").deletingLastPathComponent()
                path = dir.appendingPathComponent("\(name.isEmpty ? "input\(k)" : name)_auto.txt").path
            }
            let absolute = chosen.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            batch.append((path, absolute.joined(separator: "\n") + "\n"))
            selection.lists[name] = path
            d.inputs[k].source = .list(path)
        }
        d.sharedList = nil
        let atomic = AtomicBatch()
        for (path, text) in batch { try AtomicFile.write(Data(text.utf8), to: path, batch: atomic) }
        try atomic.commit()
        return d
    }

    static func sibling(_ path: String, suffix: String, dropExtension: Bool) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let stem = dropExtension ? url.deletingPathExtension().lastPathComponent : url.lastPathComponent
        return url.deletingLastPathComponent().appendingPathComponent(stem + suffix).path
    }
}

/// Per-item features of a few tensors: per-channel means (axis 1; groups of channels averaged
/// down to `CalibrationSubset.channelsPerTensor`) and the mean magnitude.
final class FeatureHook: ExecutionHook {
    let names: [String]
    private var ids: [ValueID: Int]? = nil
    private var parts: [[Double]]

    init(names: [String]) {
        self.names = names
        parts = Array(repeating: [], count: names.count)
    }

    func reset() { parts = Array(repeating: [], count: names.count) }

    func vector() -> [Double] { parts.flatMap { $0 } }

    func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        if ids == nil {
            var m: [ValueID: Int] = [:]
            for (k, n) in names.enumerated() { if let id = executor.id(of: n) { m[id] = k } }
            ids = m
        }
        guard let k = ids?[value], tensor.dtype == .float, tensor.count > 0 else { return nil }
        let v = tensor.floats()
        let shape = tensor.shape
        let channels = shape.count >= 2 ? shape[1] : 1
        let inner = shape.count >= 2 ? shape[2...].reduce(1, *) : v.count
        let groups = min(channels, CalibrationSubset.channelsPerTensor)
        var sums = [Double](repeating: 0, count: groups), counts = [Double](repeating: 0, count: groups)
        var magnitude = 0.0
        let outer = max(1, v.count / max(1, channels * inner))
        for o in 0..<outer {
            for c in 0..<channels {
                let gidx = c * groups / channels
                let base = (o * channels + c) * inner
                var s = 0.0
                for i in 0..<inner {
                    let x = Double(v[base + i])
                    s += x
                    magnitude += abs(x)
                }
                sums[gidx] += s
                counts[gidx] += Double(inner)
            }
        }
        parts[k] = zip(sums, counts).map { $1 > 0 ? $0 / $1 : 0 } + [magnitude / Double(v.count)]
        return nil
    }
}
