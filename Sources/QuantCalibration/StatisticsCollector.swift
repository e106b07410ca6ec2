import QuantCore
import QuantExecutor

/// Which statistics an observer keeps (declare, collect once, apply).
public struct ObserverOptions: Codable, Sendable, Equatable {
    /// Histogram bins (2048 by default; Icraft's 4096 is accepted), within `binRange`: every
    /// observed tensor keeps histograms of x and |x|, whatever the range method.
    public var bins: Int

    /// The bin counts calibration accepts: fewer than 16 cannot place a KL/MSE threshold, more
    /// than 2^20 only costs memory (two histograms per tensor).
    public static let binRange = 16...(1 << 20)
    /// Also keep per-channel min/max along this axis (1 for NCHW activations).
    public var channelAxis: Int?

    public init(bins: Int = 2048, channelAxis: Int? = nil) {
        self.bins = bins
        self.channelAxis = channelAxis
    }
}

/// An execution hook that updates `TensorStatistics` for chosen float tensors of the main
/// graph, batch by batch. Memory depends on the number of observed tensors and bins, not on
/// the number of batches.
public final class StatisticsCollector: ExecutionHook {
    public private(set) var statistics: [String: TensorStatistics] = [:]
    private let observed: Set<String>?
    private let options: ObserverOptions
    private let threads: Int

    /// Observes the tensors named in `tensors` (every float tensor when nil).
    public init(tensors: Set<String>?, options: ObserverOptions = ObserverOptions(), threads: Int = 1) {
        observed = tensors
        self.options = options
        self.threads = threads
    }

    public func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        guard tensor.dtype == .float else { return nil }
        let name = executor.name(of: value)
        if let observed, !observed.contains(name) { return nil }
        // Updated in place: a copy taken out of the dictionary would copy its histograms.
        statistics[name, default: TensorStatistics(bins: options.bins, channelAxis: options.channelAxis)].update(tensor, threads: threads)
        return nil
    }
}
