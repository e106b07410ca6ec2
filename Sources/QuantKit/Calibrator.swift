import Foundation

/// StageProgress of a long stage, reported to the caller (the library never prints).
public struct StageProgress: Sendable {
    public var stage: String
    public var done: Int
    /// Total units when known.
    public var total: Int?
    public var unit: String
}

/// Runs the float model over calibration batches with a `StatisticsCollector` attached, in one
/// pass, and returns the statistics file. Memory depends on the observed tensors and histogram
/// bins, not on the number of batches.
public struct Calibrator {
    public var observer: ObserverOptions
    public var threads: Int

    public init(observer: ObserverOptions = ObserverOptions(), threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.observer = observer
        self.threads = threads
    }

    /// Float tensors worth observing: graph inputs and node outputs, of the main graph and of
    /// If/Loop/Scan bodies (with the bodies' inputs), since bodies are quantized too.
    public static func observableTensors(_ model: Model) -> Set<String> {
        var names = Set(model.graph.runtimeInputs.map(\.name)).union(model.graph.allNodes.flatMap(\.outputs))
        for sg in model.graph.allSubgraphs { names.formUnion(sg.inputs.map(\.name)) }
        names.remove("")
        return names
    }

    /// Calibrates on the batches `next` returns (each a feed of every model input) until it
    /// returns nil. `total` is the batch count when known, for progress. Throws QK4005 when no
    /// batch arrives.
    /// `only`, when given, restricts the observed tensors to those names (a quantization run
    /// needs only the tensors its rewrite quantizes; see ``Quantizer/tensorsToObserve(modelPath:)``).
    /// `current` describes the batch `next` returned last (its files), for an error the model
    /// raises on it.
    public func run(model: Model, modelName: String, total: Int?, only: Set<String>? = nil, next: () throws -> [String: Tensor]?,
                    current: () -> String = { "" }, progress: (StageProgress) -> Void = { _ in }) throws -> StatisticsFile {
        let executor = try Executor(model: model, options: ExecutorOptions(threads: threads))
        let observable = Calibrator.observableTensors(model)
        let collector = StatisticsCollector(tensors: only.map { observable.intersection($0) } ?? observable, options: observer, threads: threads)
        var samples = 0
        var count = 0
        while let feed = try next() {
            do {
                _ = try executor.run(feed, hooks: [collector])
            } catch let e as CodedError where e.code.hasPrefix("QK3") {
                throw Calibrator.onBatch(e, index: count, files: current(), feed: feed)
            }
            samples += feed.values.first?.shape.first ?? 1
            count += 1
            progress(StageProgress(stage: "calibrate", done: count, total: total, unit: "batches"))
        }
        // The batches' tensor memory is not needed by what follows (range searches, writing).
        TensorStorage.releaseFreedMemory()
        guard count > 0 else {
            throw QuantKitError("QK4005", "calibration received no data", fix: "check the data paths; at least one batch is needed")
        }
        return StatisticsFile(model: modelName, samples: samples,
                              tensors: collector.statistics.mapValues { StatisticsFile.Entry(statistics: $0) })
    }

    /// Calibrates on every batch of `stream` (of `dataset`): an executor error names the batch
    /// and its files, and any error carries the data set's first warning. `before` runs before
    /// each batch (a cancellation check).
    public func run(model: Model, modelName: String, total: Int?, only: Set<String>? = nil, dataset: CalibrationDataset, stream: BatchStream,
                    before: () throws -> Void = {}, progress: (StageProgress) -> Void = { _ in }) throws -> StatisticsFile {
        var lastFiles = ""
        do {
            return try run(model: model, modelName: modelName, total: total, only: only,
                           next: {
                               try before()
                               let b = try stream.next()
                               lastFiles = b.map(CalibrationBatch.fileList) ?? ""
                               return b?.tensors
                           },
                           current: { lastFiles }, progress: progress)
        } catch {
            throw Calibrator.withDataWarnings(error, dataset)
        }
    }

    /// An executor error (QK3xxx) that names the calibration batch it happened on: a model
    /// that fails on one batch usually fails on its data (a text line fed at the wrong height,
    /// an image squeezed to a size the model's reshapes do not expect), not on its graph.
    static func onBatch(_ e: CodedError, index: Int, files: String, feed: [String: Tensor]) -> QuantKitError {
        let shapes = feed.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.shape)" }.joined(separator: ", ")
        let what = files.isEmpty ? "" : ", from \(files)"
        return QuantKitError(e.code, "\(e.message) (calibration batch \(index + 1): \(shapes)\(what))",
                             fix: (e.fix.isEmpty ? "" : e.fix + "; ") + "if the model runs on other inputs, check this batch's data: its shape, size and preprocessing")
    }

    /// An error raised while calibrating on `dataset` with the data set's first warning added
    /// to its fix: the warning (an image squeezed to a square, QK2116) often explains it.
    static func withDataWarnings(_ e: Error, _ dataset: CalibrationDataset) -> Error {
        guard let c = e as? CodedError, let w = dataset.report.warnings.first else { return e }
        return QuantKitError(c.code, c.message, fix: (c.fix.isEmpty ? "" : c.fix + "; ") + "the data gave a warning first: \(w.code) \(w.message)")
    }

    /// Selects a range for every tensor of `file` with `method` on `grid`, recording them.
    /// The searches run concurrently, one tensor per task.
    public static func selectRanges(_ file: inout StatisticsFile, method: RangeMethod, grid: QuantGrid) {
        let entries = file.tensors.sorted { $0.key < $1.key }
        let selections = parallelMap(entries) { RangeSelection.select($0.value.statistics, method: method, grid: grid) }
        for ((name, _), sel) in zip(entries, selections) {
            guard let sel else { continue }
            file.tensors[name]?.range = sel.range
            file.tensors[name]?.method = sel.method.description
        }
    }
}
