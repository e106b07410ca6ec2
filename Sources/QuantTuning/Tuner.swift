import Foundation
import QuantKit

/// Accuracy-driven mixed precision: raises the precision of the fewest ops until the quantized
/// model reaches a target, re-quantizing from the same statistics (never calibrating again).
///
/// The loop starts from the plan of a plain run and its analysis (the layerwise pass ranks the
/// ops: each op's own error when it alone is quantized). Round k raises the k worst ops to the
/// next precision of the ladder, k = 1, 2, 4, ... until the target is met, then bisects between
/// the last miss and the first hit for the smallest k; the few worst are first raised one at a
/// time, and their measured effect on the target re-ranks them.
///
/// The ladder is int16, then float (`tradeoff`, `accuracy`): most of the error lives in
/// tensors, and an int16 op puts its input and output tensors (and those sharing their scale)
/// on 16 bits, while a float op still reads 8-bit inputs where a quantized neighbour produces
/// them (an op whose input loses small channels to one scale is not helped by running float).
/// `performance` tries float first: in ONNX Runtime's CPU provider a float op costs its own
/// integer kernel only, an int16 op also its neighbours' (no 16-bit integer kernels). Every round is a full quantize and a graphwise
/// analysis of the result; the rounds are recorded for the report (Icraft's AutoTune, AMD
/// Quark's AutoMixprecision and Intel Neural Compressor's tolerable-loss tuning work alike).
public struct Tuner {
    public var options: TuningOptions

    public init(options: TuningOptions) { self.options = options }

    /// Ops probed one at a time before the search (at most half the rounds).
    public static let probes = 4

    public struct Outcome {
        public var tuning: AnalysisReport.Tuning
        /// The plan of the chosen round.
        public var plan: PrecisionPlan
        /// The report of the chosen round (graphwise), or the baseline's.
        public var report: AnalysisReport
        public var raised: [String]
    }

    /// Ops worth raising, worst first: those the plan quantizes, by their own (layerwise) error
    /// in `report` (graphwise when the layerwise pass did not run). Ops with no error are left out.
    public static func candidates(report: AnalysisReport, plan: PrecisionPlan, strategy: TuningStrategy) -> [String] {
        let quantized = Set(plan.ops.filter { !$0.dtype.isFloat }.map(\.node))
        var seen = Set<String>()
        let layers = report.layers.filter { quantized.contains($0.node) && seen.insert($0.node).inserted }
        func own(_ l: AnalysisReport.Layer) -> TensorErrorMetrics? { l.layerwise ?? l.graphwise }
        switch strategy {
        case .variance:
            return layers.filter { (own($0)?.snr ?? 0) > 0 }.sorted { (own($0)!.snr, $1.node) > (own($1)!.snr, $0.node) }.map(\.node)
        case .cosine:
            return layers.filter { own($0).map { $0.cosine < 1 } ?? false }.sorted { (own($0)!.cosine, $0.node) < (own($1)!.cosine, $1.node) }.map(\.node)
        }
    }

    /// `--auto-keep-float N`: the plan with the N Conv/ConvTranspose/Gemm/MatMul ops of largest
    /// own error kept float, and those ops.
    public static func keepWorstFloat(_ n: Int, report: AnalysisReport, plan: PrecisionPlan) -> (PrecisionPlan, [AnalysisReport.Layer]) {
        let worst = Array(report.computeOpsWorstByThemselves.prefix(n))
        return (plan.raising(worst.map(\.node), to: .fp32), worst)
    }

    /// Runs the loop. `baseline` and `baselineReport` are the plain run and its analysis (with
    /// the layerwise pass for the ranking); `quantize(plan, round)` quantizes with a plan (from
    /// the same statistics) into a scratch file, `measure` analyzes a result graphwise.
    /// `progress` sees each round as it ends.
    public func run(baseline: QuantizationResult, baselineReport: AnalysisReport,
                    quantize: (PrecisionPlan, Int) throws -> QuantizationResult,
                    measure: (QuantizationResult) throws -> AnalysisReport,
                    progress: (AnalysisReport.Tuning.Round) -> Void = { _ in }) throws -> Outcome {
        let target = options.target ?? .standard
        let baseValue = target.measure(baselineReport, user: try userMetric(baseline.modelPath))
        var rounds = [AnalysisReport.Tuning.Round(round: 0, change: "plain recipe" + (baseline.plan.ops.contains { $0.reason == "plan" } ? " (the plan given)" : ""),
                                                  raised: [], value: baseValue, met: target.met(baseValue),
                                                  integerKernels: baseline.integerKernels.integer, kernels: baseline.integerKernels.total,
                                                  latencyMs: try latency(baseline.modelPath), seconds: 0)]
        progress(rounds[0])
        var plans = [baseline.plan]
        var reports = [baselineReport]
        var ranked = Self.candidates(report: baselineReport, plan: baseline.plan, strategy: options.strategy)
        let floor = options.minimumIntegerKernels(plain: baseline.integerKernels.integer)
        if !rounds[0].met && !ranked.isEmpty {
            let ladder: [PrecisionPlan.Precision] = options.priority == .performance ? [.fp32, .int16] : [.int16, .fp32]
            var budget = options.rounds
            /// One round: `ops` raised to `p`. Returns the value measured.
            func trial(_ ops: [String], _ p: PrecisionPlan.Precision, probe: Bool = false) throws -> Double {
                budget -= 1
                let t0 = Date()
                let plan = baseline.plan.raising(ops, to: p)
                let r = try quantize(plan, rounds.count)
                let report = try measure(r)
                let v = target.measure(report, user: try userMetric(r.modelPath))
                let shown = ops.prefix(4).map { "'\($0)'" }.joined(separator: ", ") + (ops.count > 4 ? ", ..." : "")
                let k = ops.count
                let round = AnalysisReport.Tuning.Round(round: rounds.count, change: "\(p.rawValue): \(k) op\(k == 1 ? "" : "s") (\(shown))\(probe ? ", alone" : "")",
                                                        raised: ops, value: v, met: target.met(v), integerKernels: r.integerKernels.integer,
                                                        kernels: r.integerKernels.total, latencyMs: try latency(r.modelPath), seconds: Date().timeIntervalSince(t0))
                rounds.append(round)
                plans.append(plan)
                reports.append(report)
                progress(round)
                return v
            }
            ladderLoop: for p in ladder {
                // Probe: the few worst-ranked ops raised one at a time. The error an op makes
                // alone is not the error it causes at the outputs (an op whose input loses small
                // channels to a shared scale looks fine by itself); their measured effect
                // re-ranks them, ahead of the ops not probed. One that reaches the target alone
                // ends the search.
                let probes = Array(ranked.prefix(min(Self.probes, ranked.count, budget / 2)))
                var effect: [String: Double] = [:]
                for op in probes {
                    let v = try trial([op], p, probe: true)
                    if target.met(v) { break ladderLoop }
                    effect[op] = v
                }
                let probed = probes.enumerated().sorted { a, b in
                    target.better(effect[a.element]!, than: effect[b.element]!) || (effect[a.element]! == effect[b.element]! && a.offset < b.offset)
                }.map(\.element)
                ranked = probed + ranked.filter { effect[$0] == nil }
                // Then the k first of that ranking, k = 2, 4, ... (1 is the best probe).
                var miss = probes.isEmpty ? 0 : 1
                var hit: Int? = nil
                var k = probes.isEmpty ? 1 : 2
                while budget > 0 && k <= ranked.count {
                    if target.met(try trial(Array(ranked.prefix(k)), p)) {
                        hit = k
                        break
                    }
                    miss = k
                    // More ops would keep fewer integer kernels still: the next precision.
                    if rounds.last!.integerKernels < floor { break }
                    if k == ranked.count { break }
                    k = min(k * 2, ranked.count)
                }
                guard var h = hit else { continue }
                // Bisect between the last miss and the first hit.
                while h - miss > 1 && budget > 0 {
                    let mid = (miss + h) / 2
                    if target.met(try trial(Array(ranked.prefix(mid)), p)) { h = mid } else { miss = mid }
                }
                break ladderLoop
            }
        }
        let chosen = choose(rounds)
        return Outcome(tuning: AnalysisReport.Tuning(target: target.description, met: rounds[chosen].met, chosen: chosen, rounds: rounds),
                       plan: plans[chosen], report: reports[chosen], raised: rounds[chosen].raised)
    }

    /// The round whose plan is kept: among those that met the target, the fewest raised ops
    /// (`tradeoff`), the best value (`accuracy`), or the fastest by latency, then the most
    /// integer kernels (`performance`); when none met, the best value.
    func choose(_ all: [AnalysisReport.Tuning.Round]) -> Int {
        // Only plans that keep enough integer kernels (the first round always counts).
        let floor = all.first.map { options.minimumIntegerKernels(plain: $0.integerKernels) } ?? 0
        let rounds = all.filter { $0.round == 0 || $0.integerKernels >= floor }
        let met = rounds.filter(\.met)
        let target = options.target ?? .standard
        guard !met.isEmpty else {
            return rounds.reduce(rounds[0]) { target.better($1.value, than: $0.value) ? $1 : $0 }.round
        }
        let best = met.min { a, b in
            if options.priority == .performance {
                if let la = a.latencyMs, let lb = b.latencyMs, la != lb { return la < lb }
                if a.integerKernels != b.integerKernels { return a.integerKernels > b.integerKernels }
            }
            if options.priority == .accuracy, a.value != b.value { return target.better(a.value, than: b.value) }
            if a.raised.count != b.raised.count { return a.raised.count < b.raised.count }
            return a.round < b.round
        }!
        return best.round
    }

    func userMetric(_ model: String) throws -> Double? {
        guard options.target?.metric == .metric, let cmd = options.evalCommand else { return nil }
        return try UserEvaluation(command: cmd, metricsFile: options.evalMetricsFile).evaluate(model: model)
    }

    func latency(_ model: String) throws -> Double? {
        guard let cmd = options.latencyCommand else { return nil }
        return try UserEvaluation(command: cmd).evaluate(model: model)
    }
}
