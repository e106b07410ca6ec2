import Foundation
import QuantCore
import QuantIR

/// One batch: a tensor per model input, plus the files it was made from.
public struct CalibrationBatch: @unchecked Sendable {
    public var index: Int
    public var tensors: [String: Tensor]
    /// The item files per input (empty for random inputs).
    public var files: [String: [String]]

    /// "x: a.png, b.png" (at most 3 files per input), for messages.
    public static func fileList(_ b: CalibrationBatch) -> String {
        b.files.sorted { $0.key < $1.key }.filter { !$0.value.isEmpty }.map { name, fs in
            "\(name): " + fs.prefix(3).map { "'\($0)'" }.joined(separator: ", ") + (fs.count > 3 ? " and \(fs.count - 3) more" : "")
        }.joined(separator: "; ")
    }
}

/// A warning the data set collected (the library never prints; callers show the report).
public struct DataWarning: Codable, Sendable, Equatable {
    public var code: String
    public var input: String
    public var message: String
}

/// What streaming the data produced so far.
public struct DataReport: Codable, Sendable, Equatable {
    public var batches = 0
    public var items = 0
    /// NaN/Inf values seen, per input.
    public var nonFiniteValues: [String: Int] = [:]
    public var warnings: [DataWarning] = []
}

/// Streams calibration batches (`[input name: Tensor]`) from per-input sources, decoding one
/// batch at a time in the background while the caller uses the previous one (a bounded queue
/// of `config.prefetch` batches), so memory holds a few batches, never the whole data set.
///
/// Listing files, matching list lengths and validating the configuration happen in `init`;
/// file contents are read while streaming, and their errors are thrown by `BatchStream.next()`.
public final class CalibrationDataset: @unchecked Sendable {
    public let config: DatasetConfig
    public let signatures: [InputSignature]
    let plans: [InputPlan]
    /// Items per input (the same for all inputs); 0 for a stream, whose length is not known.
    public let itemCount: Int
    /// The stream every input reads when the configuration sets one.
    public let frames: FrameStream?

    /// Every file the data set reads: items of every input and the list files naming them.
    public var sourceFiles: [String] {
        var files = plans.flatMap(\.items)
        if let l = config.sharedList { files.append(l) }
        for i in config.inputs { if case .list(let l) = i.source { files.append(l) } }
        return files
    }
    /// The item files of each input (by input name; empty for random data), in item order.
    public var itemFiles: [String: [String]] {
        Dictionary(uniqueKeysWithValues: plans.map { ($0.config.name, $0.items) })
    }
    private let lock = NSLock()
    private var _report = DataReport()

    /// The model's runtime inputs (inputs that are not initializers) as signatures.
    public static func signatures(of graph: Graph) -> [InputSignature] {
        graph.runtimeInputs.map { v in
            let t = v.tensorType
            // A negative dim_value (PaddlePaddle writes -1 for the batch) is symbolic too.
            let shape = t?.shape?.map { $0.intValue.flatMap { $0 >= 0 ? $0 : nil } }
            let symbols = t?.shape?.map { d -> String? in if case .param(let p) = d { p } else { nil } } ?? []
            return InputSignature(name: v.name, dtype: t?.elementType ?? .float, shape: shape, symbols: symbols)
        }
    }

    public convenience init(model: Model, config: DatasetConfig, custom: [String: CustomPreprocess] = [:]) throws {
        try self.init(signatures: CalibrationDataset.signatures(of: model.graph), config: config, custom: custom)
    }

    /// - Parameter custom: Swift preprocessing closures by input name; they replace the
    ///   built-in readers (and `preprocessFile`) for those inputs.
    public init(signatures: [InputSignature], config: DatasetConfig, custom: [String: CustomPreprocess] = [:]) throws {
        try config.validate(modelInputs: signatures)
        self.config = config
        self.signatures = signatures
        let shared: [[String]]? = try config.sharedList.map { try ItemDiscovery.list($0) }
        var plans: [InputPlan] = []
        let sink = WarningSink()
        for (k, sig) in signatures.enumerated() {
            let c = config.inputs.first { $0.name == sig.name }!
            var s = sig
            if let shape = c.shape {
                s.shape = shape.map { $0 < 0 ? nil : $0 }
                if s.symbols.count != shape.count { s.symbols = Array(repeating: nil, count: shape.count) }
            }
            if let dt = c.dtype { s.dtype = dt }
            let items: [String]
            switch c.source {
            case .folder(let f): items = try ItemDiscovery.folder(f, input: c.name, fileType: c.fileType)
            case .list(let l):
                let rows = try ItemDiscovery.list(l)
                if let r = rows.first, r.count != 1 {
                    throw DataError.badList(list: l, line: nil, reason: "lines hold \(r.count) files but input '\(c.name)' uses one per line; use sharedList for several inputs")
                }
                items = rows.map { $0[0] }
                if items.isEmpty { throw DataError.noItems(input: c.name, searched: l, detail: "the list is empty") }
            case .files(let f):
                items = f
                if f.isEmpty { throw DataError.noItems(input: c.name, searched: "(files)") }
            case .sharedList(let column):
                guard let rows = shared, let first = rows.first else { throw DataError.noItems(input: c.name, searched: config.sharedList ?? "") }
                guard column < first.count else {
                    throw DataError.badList(list: config.sharedList!, line: nil, reason: "input '\(c.name)' reads column \(column) but lines hold \(first.count) file(s)")
                }
                items = rows.map { $0[column] }
            case .stream, .emptyCache:
                items = []
            case .random:
                items = []
                if s.shape == nil {
                    throw DataError.invalidConfig(input: c.name, "random data needs a shape but the input's rank is unknown", fix: "set the input's shape")
                }
            }
            let python = custom[c.name] == nil && c.preprocessFile != nil ? PythonPreprocess(python: config.python, input: c, signature: s) : nil
            var plan = InputPlan(index: k, config: c, signature: s, items: items, python: python, custom: custom[c.name],
                                 seed: config.seed, symbolicDims: config.symbolicDims, symbolicDimDefault: config.symbolicDimDefault,
                                 limits: config.limits)
            plan.warn = { [sink] w in sink.dataset?.warnOnce(w) }
            plans.append(plan)
        }
        if let rows = shared, let width = rows.first?.count {
            let used = config.inputs.filter { if case .sharedList = $0.source { true } else { false } }.count
            if width > used {
                throw DataError.badList(list: config.sharedList!, line: nil,
                                        reason: "lines hold \(width) files but \(used) model input(s) read the list; give one file per input on each line")
            }
        }
        let counted = plans.filter { !$0.isGenerated }
        if let n = counted.first?.items.count, counted.contains(where: { $0.items.count != n }) {
            throw DataError.lengthMismatch(counted.map { ($0.config.name, $0.items.count) })
        }
        self.plans = plans
        frames = try config.stream.map { try FrameStream.shared(path: $0, retainItems: config.streamRetainItems) }
        itemCount = frames != nil ? 0 : counted.first?.items.count ?? config.randomItems ?? (config.steps ?? 1) * config.batchSize
        sink.dataset = self
    }

    /// Where item readers send warnings: the data set once it exists (held weakly).
    final class WarningSink: @unchecked Sendable {
        weak var dataset: CalibrationDataset?
    }

    /// Adds a warning unless one of the same code for the same input is already in the report.
    func warnOnce(_ w: DataWarning) {
        record { r in
            if !r.warnings.contains(where: { $0.code == w.code && $0.input == w.input }) { r.warnings.append(w) }
        }
    }

    /// Batches that streaming yields: every item in batches of `batchSize` (the last may be
    /// smaller), at most `steps`.
    public var batchCount: Int {
        if frames != nil { return config.steps ?? Int.max }
        let all = (itemCount + config.batchSize - 1) / config.batchSize
        return min(all, config.steps ?? all)
    }

    /// A snapshot of the report (updated as batches are produced).
    public var report: DataReport {
        lock.lock(); defer { lock.unlock() }
        return _report
    }

    func record(_ body: (inout DataReport) -> Void) {
        lock.lock(); defer { lock.unlock() }
        body(&_report)
    }

    /// Starts streaming: a background thread decodes batches ahead into a bounded queue.
    public func makeStream() -> BatchStream { BatchStream(dataset: self) }

    /// Streams every batch through `body`, in order.
    public func forEachBatch(_ body: (CalibrationBatch) throws -> Void) throws {
        let s = makeStream()
        defer { s.cancel() }
        while let b = try s.next() { try body(b) }
    }

    /// The number of batches when known before streaming (not for a stream).
    public var knownBatchCount: Int? { frames == nil ? batchCount : nil }

    /// Builds batch `b` synchronously (the stream calls this on its worker thread).
    public func batch(_ b: Int) throws -> CalibrationBatch? {
        if let frames { return try streamed(b, frames) }
        let lo = b * config.batchSize, hi = min(lo + config.batchSize, itemCount)
        guard lo < hi else { return nil }
        var tensors: [String: Tensor] = [:], files: [String: [String]] = [:]
        for plan in plans {
            let name = plan.config.name
            let paths = plan.isGenerated ? [] : Array(plan.items[lo..<hi])
            let t: Tensor
            if plan.config.source == .emptyCache {
                t = plan.emptyCache(items: hi - lo)
            } else if plan.custom != nil || plan.python != nil {
                t = try plan.preprocessed(paths: paths)
            } else if plan.isRandom {
                t = try assemble(plan, try (lo..<hi).map { try plan.randomItem($0) }, files: ["random"])
            } else {
                t = try assemble(plan, try paths.map { try plan.read($0) }, files: paths)
            }
            if let fixed = plan.signature.shape?.first ?? nil, t.rank > 0, t.shape[0] != fixed {
                if hi - lo < config.batchSize && b > 0 {
                    record { $0.warnings.append(DataWarning(code: "QK2114", input: name,
                        message: "the last \(hi - lo) item(s) are left out: input '\(name)' has a fixed batch dimension of \(fixed) and they give \(t.shape[0]) row(s)")) }
                    return nil
                }
                throw DataError.invalidConfig(input: name, "batches have \(t.shape[0]) row(s) but the input's batch dimension is fixed at \(fixed)",
                                              fix: "set the batch size so that a batch has \(fixed) row(s), or declare the batch dimension symbolic (shape -1)")
            }
            let bad = TensorConversion.nonFiniteCount(t)
            if bad > 0 {
                let e = DataError.nonFinite(input: name, batch: b, count: bad, files: paths)
                if config.nonFinite == .fail { throw e }
                record {
                    $0.nonFiniteValues[name, default: 0] += bad
                    $0.warnings.append(DataWarning(code: e.code, input: name, message: e.message))
                }
            }
            tensors[name] = t
            files[name] = paths
        }
        record { $0.batches += 1; $0.items += hi - lo }
        return CalibrationBatch(index: b, tensors: tensors, files: files)
    }

    /// Batch `b` of the stream, each input checked and converted as a file's would be.
    func streamed(_ b: Int, _ frames: FrameStream) throws -> CalibrationBatch? {
        guard let feed = try frames.batch(b) else { return nil }
        let label = "batch \(b + 1) of the stream"
        if let extra = feed.keys.sorted().first(where: { k in !plans.contains { $0.config.name == k } }) {
            throw DataError.unknownInput(extra, model: plans.map(\.config.name))
        }
        var tensors: [String: Tensor] = [:]
        for plan in plans {
            let name = plan.config.name
            if plan.config.source == .emptyCache {
                tensors[name] = plan.emptyCache(items: feed.values.first.map { $0.rank > 0 ? $0.shape[0] : 1 } ?? 1)
                continue
            }
            guard var t = feed[name] else {
                throw FrameStream.error(frames.path, "gives no frame for input '\(name)' in batch \(b + 1)", fix: "send one frame per model input in every batch")
            }
            if let shape = plan.signature.shape, t.rank == shape.count - 1 { t.shape.insert(1, at: 0) }
            try plan.check(shape: t.shape, file: label)
            if !TensorConversion.canFeed(t.dtype, to: plan.target) {
                throw DataError.dtypeMismatch(input: name, expected: plan.target, file: label, actual: t.dtype)
            }
            t = TensorConversion.convert(t, to: plan.target)
            let bad = TensorConversion.nonFiniteCount(t)
            if bad > 0 {
                let e = DataError.nonFinite(input: name, batch: b, count: bad, files: [label])
                if config.nonFinite == .fail { throw e }
                record {
                    $0.nonFiniteValues[name, default: 0] += bad
                    $0.warnings.append(DataWarning(code: e.code, input: name, message: e.message))
                }
            }
            tensors[name] = t
        }
        record { $0.batches += 1; $0.items += tensors.values.first.map { $0.rank > 0 ? $0.shape[0] : 1 } ?? 1 }
        return CalibrationBatch(index: b, tensors: tensors, files: [:])
    }

    /// Concatenates items whose non-batch dimensions agree (QK2104 names the first that differs).
    func assemble(_ plan: InputPlan, _ items: [Tensor], files: [String]) throws -> Tensor {
        if items.count == 1 || items[0].rank == 0 { return items[0] }
        let first = items[0].shape
        for (k, t) in items.enumerated() where Array(t.shape.dropFirst()) != Array(first.dropFirst()) {
            let d = t.rank != first.count ? nil : (1..<first.count).first { t.shape[$0] != first[$0] }
            throw DataError.shapeMismatch(input: plan.config.name, expected: "\(DataError.shapeText(first)) (as '\(files.first ?? "")' in the same batch)",
                                          file: k < files.count ? files[k] : "random", actual: t.shape, dimension: d)
        }
        return TensorConversion.concat(items)
    }
}
