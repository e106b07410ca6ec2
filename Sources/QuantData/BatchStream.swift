import Foundation

/// A running stream of batches. A worker thread builds batches in order and parks them in a
/// queue of at most `config.prefetch` batches; `next()` takes them out. The first error stops
/// the worker and is thrown by `next()` after the batches before it. Dropping the stream (or
/// `cancel()`) stops the worker after the batch it is building.
public final class BatchStream: @unchecked Sendable {
    /// The state shared with the worker; the worker never retains the `BatchStream` itself,
    /// so releasing the stream cancels the worker instead of leaking it.
    final class Queue: @unchecked Sendable {
        let condition = NSCondition()
        var items: [Result<CalibrationBatch?, Error>] = []
        var cancelled = false
        var finished = false
    }

    private let queue = Queue()

    init(dataset: CalibrationDataset) {
        let q = queue
        let t = Thread { BatchStream.produce(dataset, q) }
        t.name = "quantkit.data.prefetch"
        t.start()
    }

    private static func produce(_ dataset: CalibrationDataset, _ q: Queue) {
        let capacity = dataset.config.prefetch
        for b in 0..<dataset.batchCount {
            q.condition.lock()
            let stop = q.cancelled
            q.condition.unlock()
            if stop { break }
            let r: Result<CalibrationBatch?, Error> = Result { try dataset.batch(b) }
            q.condition.lock()
            while q.items.count >= capacity && !q.cancelled { q.condition.wait() }
            if q.cancelled { q.condition.unlock(); break }
            q.items.append(r)
            q.condition.broadcast()
            q.condition.unlock()
            if case .failure = r { break }
            if case .success(nil) = r { break }
        }
        q.condition.lock()
        q.finished = true
        q.condition.broadcast()
        q.condition.unlock()
    }

    /// The next batch, nil at the end. Rethrows the error that stopped the stream.
    public func next() throws -> CalibrationBatch? {
        let q = queue
        q.condition.lock()
        defer { q.condition.unlock() }
        while q.items.isEmpty && !q.finished && !q.cancelled { q.condition.wait() }
        guard !q.items.isEmpty else { return nil }
        let r = q.items.removeFirst()
        q.condition.broadcast()
        switch r {
        case .success(let b?): return b
        case .success(nil):
            q.cancelled = true
            return nil
        case .failure(let e):
            q.cancelled = true
            throw e
        }
    }

    /// Stops the worker after the batch it is building; later `next()` calls return nil.
    public func cancel() {
        queue.condition.lock()
        queue.cancelled = true
        queue.items.removeAll()
        queue.condition.broadcast()
        queue.condition.unlock()
    }

    deinit { cancel() }
}
