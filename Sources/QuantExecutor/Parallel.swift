import CKernels
import Foundation

/// Splits `0..<count` into at most `threads` contiguous chunks and runs `body(range)` for each
/// on the process's persistent worker pool (`qk_parallel_run`: the caller works too); runs
/// inline when one chunk suffices, or when the pool is busy (nested or concurrent calls).
/// `grain` is the smallest chunk worth a thread (in iterations).
///
/// Why not `DispatchQueue.concurrentPerform`: on this 2-core machine each call cost ~0.1–1 ms
/// of wake-up latency, paid by every kernel; the pool's workers spin briefly between jobs.
public func parallelFor(_ count: Int, threads: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let chunks = min(threads, max(1, count / max(grain, 1)))
    if chunks <= 1 {
        body(0..<count)
        return
    }
    parallelTasks(chunks, threads: threads) { c in
        let lo = count * c / chunks
        let hi = count * (c + 1) / chunks
        if lo < hi { body(lo..<hi) }
    }
}

/// Runs `body(task)` for every task in `0..<tasks` on the worker pool (at most `threads`
/// threads including the caller) and returns when all are done.
public func parallelTasks(_ tasks: Int, threads: Int, _ body: (Int) -> Void) {
    guard tasks > 0 else { return }
    if tasks == 1 || threads <= 1 {
        for t in 0..<tasks { body(t) }
        return
    }
    withoutActuallyEscaping(body) { escaping in
        var box = escaping
        withUnsafeMutablePointer(to: &box) { ctx in
            qk_parallel_run(Int32(tasks), Int32(threads), { raw, task in
                raw!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(task)
            }, ctx)
        }
    }
}

/// `transform` of every element on the worker pool (contiguous chunks, one per thread); the
/// results keep the input order.
public func parallelMap<T, R>(_ items: [T], threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                              _ transform: (T) -> R) -> [R?] {
    var out = [R?](repeating: nil, count: items.count)
    out.withUnsafeMutableBufferPointer { buf in
        parallelFor(items.count, threads: threads) { r in
            for i in r { buf[i] = transform(items[i]) }
        }
    }
    return out
}
