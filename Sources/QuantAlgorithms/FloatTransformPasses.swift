import Foundation
import QuantCalibration
import QuantIR

extension FloatTransforms {
    /// What applying the transforms did.
    public struct Report: Codable, Sendable, Equatable {
        public var equalization: CrossLayerEqualization.Report?
        /// Per smoothed site: α, where the division went, outlier ratio and error (the α and
        /// errors are known where the factors were chosen, in the run that calibrated).
        public var smoothing: SmoothQuant.Report?
        /// Nodes the transforms inserted that must stay float (SmoothQuant's explicit Mul).
        public var floatNodes: [String] = []
        public init() {}
    }

    /// Applies the transforms to a prepared model (``Preparation/run(_:)`` first): equalization,
    /// then SmoothQuant's factors. The float outputs stay the same.
    @discardableResult
    public func apply(to model: Model) throws -> Report {
        var r = Report()
        if equalize { r.equalization = CrossLayerEqualization.run(model.graph) }
        if !smoothing.isEmpty {
            let (folded, floatNodes) = SmoothQuant.apply(model.graph, factors: smoothing)
            r.floatNodes = floatNodes
            var report = SmoothQuant.Report()
            for (t, how) in folded.sorted(by: { $0.key < $1.key }) {
                report.sites.append(SmoothQuant.SiteReport(tensor: t, readers: [], alpha: nil, folded: how, outlierBefore: 0, outlierAfter: 0))
            }
            r.smoothing = report
        }
        try model.graph.sortTopologically()
        return r
    }

    /// Prepares `model` (``Preparation/run(_:)``) and applies the transforms.
    @discardableResult
    public func prepare(_ model: Model) throws -> (Preparation.Report, Report) {
        let p = try Preparation.run(model)
        return (p, try apply(to: model))
    }
}
