import Dispatch

/// Splits `0..<count` into at most `threads` contiguous chunks and runs `body(range)` for each
/// on Dispatch's pool; runs inline when one chunk suffices. `grain` is the smallest chunk worth
/// a thread (in iterations).
@inlinable
public func parallelFor(_ count: Int, threads: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let chunks = min(threads, max(1, count / max(grain, 1)))
    if chunks <= 1 {
        body(0..<count)
        return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = count * c / chunks
        let hi = count * (c + 1) / chunks
        if lo < hi { body(lo..<hi) }
    }
}
