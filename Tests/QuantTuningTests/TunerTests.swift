import Foundation
import QuantKit
import QuantTuning
import Testing

/// A report whose layers have the given own (layerwise) SNRs and whose one output has `cosine`.
private func report(cosine: Double, layers: [(String, Double)] = [], sliceCosine: Double? = nil) throws -> AnalysisReport {
    func metrics(snr: Double, cosine: Double) -> String {
        """
        {"elements": 10, "snr": \(snr), "cosine": \(cosine), "mse": \(1 - cosine), "mae": \(1 - cosine), "relativeEuclidean": \(snr.squareRoot()), "maxAbsError": 1\
        \(sliceCosine.map { ", \"slices\": [{\"axis\": 1, \"channels\": \"4-5\", \"count\": 2, \"range\": 1, \"snr\": 0.5, \"cosine\": \($0)}]" } ?? "")}
        """
    }
    let ls = layers.enumerated().map { k, l in
        """
        {"index": \(k + 1), "node": "\(l.0)", "opType": "Conv", "tensor": "\(l.0)_out", "inputs": [], "layerwise": \(metrics(snr: l.1, cosine: 1 - l.1)), "marked": false, "advice": []}
        """
    }
    let json = """
        {"version": 1, "floatModel": "f.onnx", "quantizedModel": "q.onnx", "samples": 4, "batches": 1, "snrWarning": 0.1, "cosineWarning": 0.99,
         "model": {"floatNodes": 5, "quantizedModelNodes": 9, "quantizedOps": 5, "quantizedActivations": 5, "quantizedWeights": 5, "opTypes": {},
                   "parameters": 0, "inputs": [], "outputs": []},
         "outputs": [{"name": "y", "metrics": \(metrics(snr: 1 - cosine, cosine: cosine))}],
         "layers": [\(ls.joined(separator: ","))], "histograms": [], "evaluations": [], "findings": [], "notes": []}
        """
    return try JSONDecoder().decode(AnalysisReport.self, from: Data(json.utf8))
}

private let nodes = ["a", "b", "c", "d", "e", "f", "g", "h"]
private let plan = PrecisionPlan(ops: nodes.enumerated().map { .init(opId: $0, node: $1, type: "Conv", dtype: .int8, per: .channel) })
/// Own errors: h worst, then g, ... a best.
private let ranked: [(String, Double)] = nodes.enumerated().map { ($1, 0.01 * Double($0 + 1)) }

@Test func targetsParseWithTheirDirection() throws {
    #expect(try TuningTarget(parsing: "cosine=0.995") == TuningTarget(metric: .cosine, value: 0.995, higherIsBetter: true))
    #expect(try TuningTarget(parsing: "snr=0.01").higherIsBetter == false)
    #expect(try TuningTarget(parsing: "metric<=3.5") == TuningTarget(metric: .metric, value: 3.5, higherIsBetter: false))
    #expect(try TuningTarget(parsing: "metric>=0.7").higherIsBetter)
    for bad in ["cosine", "cosine=2", "snr>=0.1", "speed=1", "mse=-1", "cosine=x"] {
        #expect(throws: QuantKitError.self, "\(bad)") { try TuningTarget(parsing: bad) }
    }
}

@Test func targetMeasuresTheWorstSlice() throws {
    let t = TuningTarget.standard
    // The whole output looks fine; its score slice does not.
    let r = try report(cosine: 0.9997, sliceCosine: 0.97)
    #expect(t.measure(r) == 0.97 && !t.met(t.measure(r)))
    #expect(t.met(t.measure(try report(cosine: 0.995))))
    #expect(TuningTarget(metric: .snr, value: 0.1).measure(try report(cosine: 0.99, sliceCosine: 0.9)) == 0.5)
}

@Test func candidatesAreWorstFirstAndOnlyQuantizedOps() throws {
    var p = plan
    p.ops[7].dtype = .fp32  // h is float already
    let c = Tuner.candidates(report: try report(cosine: 0.9, layers: ranked), plan: p, strategy: .variance)
    #expect(c == ["g", "f", "e", "d", "c", "b", "a"])
    #expect(Tuner.candidates(report: try report(cosine: 0.9, layers: ranked), plan: plan, strategy: .cosine).first == "h")
}

/// Runs the loop on a fake model whose output cosine is 0.95 plus 0.01 per raised op among the
/// worst five (int16 counts half of float), or plus `alone` for op f.
/// With `kernels`, the model has that many Conv kernels, all integer in the plain run; each op
/// raised to float costs one, to int16 two.
private func tune(_ options: TuningOptions, alone: Double = 0, kernels: Int = 0) throws -> (Tuner.Outcome, [String]) {
    var tried: [String] = []
    func summary(_ integer: Int) throws -> RuntimeFusion.Summary {
        let ks = (0..<kernels).map { #"{"node": "k\#($0)", "opType": "Conv"\#($0 < integer ? #", "integerKernel": "QLinearConv""# : "")}"# }
        return try JSONDecoder().decode(RuntimeFusion.Summary.self, from: Data(#"{"kernels": [\#(ks.joined(separator: ","))]}"#.utf8))
    }
    let base = QuantizationResult(modelPath: "q.onnx", parametersPath: "q.qparams.json", plan: plan, integerKernels: try summary(kernels))
    var last = PrecisionPlan()
    let outcome = try Tuner(options: options).run(
        baseline: base, baselineReport: try report(cosine: 0.95, layers: ranked),
        quantize: { p, round in
            last = p
            let raised = p.ops.filter { $0.dtype != .int8 }
            tried.append(raised.map { "\($0.node):\($0.dtype.rawValue)" }.joined(separator: ","))
            let lost = p.ops.reduce(0) { $0 + ($1.dtype == .fp32 ? 1 : $1.dtype == .int16 ? 2 : 0) }
            return QuantizationResult(modelPath: "round\(round).q.onnx", parametersPath: "", plan: p, integerKernels: try summary(max(0, kernels - lost)))
        },
        measure: { _ in
            let gain = alone > 0 ? (last.ops.contains { $0.node == "f" && $0.dtype == .fp32 } ? alone : 0)
                : last.ops.filter { ["h", "g", "f", "e", "d"].contains($0.node) }.reduce(0.0) { $0 + ($1.dtype == .fp32 ? 0.01 : $1.dtype == .int16 ? 0.005 : 0) }
            return try report(cosine: 0.95 + gain)
        })
    return (outcome, tried)
}

@Test func loopRaisesTheFewestOpsToReachTheTarget() throws {
    // 0.98 needs three ops in float (0.95 + 3 x 0.01), or six int16 ops (only five help: never).
    let (o, tried) = try tune(TuningOptions(target: TuningTarget(metric: .cosine, value: 0.98), priority: .tradeoff, rounds: 12))
    #expect(o.tuning.met)
    #expect(o.raised == ["h", "g", "f"])
    #expect(o.plan.ops.filter { $0.dtype == .fp32 }.map(\.node).sorted() == ["f", "g", "h"])
    // int16: 4 probes alone, then 2, 4, 8 ops miss; float: 2 probes (half the rounds left), then
    // 2 miss, 4 hits, 3 (bisection) hits.
    #expect(tried.count == 12)
    #expect(o.tuning.rounds[o.tuning.chosen].change.hasPrefix("fp32: 3 ops"))
}

@Test func performanceGoesToFloatFirst() throws {
    // 4 probes alone, then 2 miss, 4 hits, 3 hits: the fewest ops (no latency given, the most
    // integer kernels: equal here); accuracy keeps the best value instead.
    let (o, tried) = try tune(TuningOptions(target: TuningTarget(metric: .cosine, value: 0.98), priority: .performance, rounds: 12))
    #expect(o.raised == ["h", "g", "f"] && tried.count == 7)
    #expect(tried.prefix(4) == ["h:fp32", "g:fp32", "f:fp32", "e:fp32"])
    let (a, _) = try tune(TuningOptions(target: TuningTarget(metric: .cosine, value: 0.98), priority: .accuracy, rounds: 16))
    #expect(a.raised == ["h", "g", "f", "e"])
}

@Test func anOpThatReachesTheTargetAloneEndsTheSearch() throws {
    // Only f matters (third by its own error): the probes find it.
    let (o, tried) = try tune(TuningOptions(target: TuningTarget(metric: .cosine, value: 0.98), priority: .performance, rounds: 8), alone: 0.04)
    #expect(o.tuning.met && o.raised == ["f"] && tried == ["h:fp32", "g:fp32", "f:fp32"])
}

@Test func theBestRoundIsKeptWhenRoundsRunOut() throws {
    let (o, tried) = try tune(TuningOptions(target: TuningTarget(metric: .cosine, value: 0.999), priority: .accuracy, rounds: 2))
    #expect(!o.tuning.met && tried.count == 2)
    #expect(o.tuning.chosen == 2 && o.raised == ["h", "g"])
    #expect(o.tuning.rounds.count == 3 && o.tuning.rounds[0].change == "plain recipe")
}

@Test func aPlanThatLeavesTooFewIntegerKernelsIsNotChosen() throws {
    // 10 integer kernels, 8 must stay: int16 stops at 2 ops (6 left), float meets the target only
    // with 3 or 4 ops (7, 6 left): the best plan within the limit is kept, the target reported missed.
    let (o, _) = try tune(TuningOptions(target: TuningTarget(metric: .cosine, value: 0.98), priority: .tradeoff, rounds: 12), kernels: 10)
    #expect(!o.tuning.met && o.raised == ["h", "g"] && o.tuning.rounds[o.tuning.chosen].change.hasPrefix("fp32: 2 ops"))
    #expect(o.tuning.rounds.contains { $0.met && $0.integerKernels < 8 })
    // Without the limit (accuracy priority's default) the best met plan wins.
    let (a, _) = try tune(TuningOptions(target: TuningTarget(metric: .cosine, value: 0.98), priority: .accuracy, rounds: 16), kernels: 10)
    #expect(a.tuning.met && a.raised.count == 4)
}
