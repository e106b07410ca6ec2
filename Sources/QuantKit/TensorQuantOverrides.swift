import Foundation
import QuantCalibration
import QuantCore

/// ONNX Runtime's `TensorQuantOverrides` (an `extra_options` key of its `quantize_static`), read
/// from JSON: `{tensor name: [ {quant_type, scale, zero_point, rmin, rmax, symmetric, axis,
/// reduce_range} ]}`, one dictionary per tensor or, with `axis`, per channel of a weight.
///
/// QuantKit takes from it, per activation tensor, the clipping range: `rmin`/`rmax` as given, or
/// the range a `scale` and `zero_point` span on the tensor's grid, [(qmin − z)·s, (qmax − z)·s]
/// (QuantKit derives the same scale and zero point from it, up to rounding). `quant_type` and
/// `symmetric` must agree with how the run quantizes the tensor. A weight's entry says its
/// granularity (`axis`: per channel; none: per tensor), which must agree with the run's; its
/// values come from the weight itself, so weight scales, zero points and ranges are refused.
/// Every refusal is QK7023 naming the tensor, so nothing is silently ignored.
public struct TensorQuantOverrides: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var quantType: String?
        public var symmetric: Bool?
        public var axis: Int?
        public var scale: Double?
        public var zeroPoint: Int?
        public var rmin: Double?
        public var rmax: Double?
        /// Channel entries after the first (weights).
        public var channels = 1
    }

    public var entries: [String: Entry]
    public let path: String

    static func error(_ path: String, _ what: String, fix: String) -> QuantKitError {
        QuantKitError("QK7023", "TensorQuantOverrides '\(path)': \(what)", fix: fix)
    }

    /// The type names ONNX Runtime's QuantType has, as QuantKit's grids.
    static let types: [String: QuantGrid] = [
        "QInt8": QuantGrid(bits: 8, signed: true, symmetric: false), "QUInt8": QuantGrid(bits: 8, signed: false, symmetric: false),
        "QInt16": QuantGrid(bits: 16, signed: true, symmetric: false), "QUInt16": QuantGrid(bits: 16, signed: false, symmetric: false),
        "QInt4": QuantGrid(bits: 4, signed: true, symmetric: false), "QUInt4": QuantGrid(bits: 4, signed: false, symmetric: false),
        "QFLOAT8E4M3FN": QuantGrid.float8(.float8e4m3fn),
    ]
    static let typeValues = ["QInt8", "QUInt8", "QFLOAT8E4M3FN", "QInt16", "QUInt16", "QInt4", "QUInt4"]

    public init(contentsOf path: String) throws {
        self.path = path
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TensorQuantOverrides.error(path, "cannot be read (\(error.localizedDescription))", fix: "give the JSON file ONNX Runtime's TensorQuantOverrides were saved to")
        }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TensorQuantOverrides.error(path, "is not a JSON object of tensor name to a list of dictionaries",
                                             fix: "write it as {\"tensor\": [{\"rmin\": 0, \"rmax\": 6}]} (json.dump of the extra_options value)")
        }
        var entries: [String: Entry] = [:]
        for (name, value) in root {
            let list: [[String: Any]]
            if let l = value as? [[String: Any]], !l.isEmpty { list = l } else if let d = value as? [String: Any] { list = [d] } else {
                throw TensorQuantOverrides.error(path, "tensor '\(name)' has no list of dictionaries", fix: "give each tensor a list of one dictionary (per channel: one per channel, axis in the first)")
            }
            let first = list[0]
            var e = Entry()
            e.channels = list.count
            func number(_ k: String) throws -> Double? {
                guard let v = first[k] else { return nil }
                if let n = v as? NSNumber { return n.doubleValue }
                if let a = v as? [NSNumber], a.count == 1 { return a[0].doubleValue }
                throw TensorQuantOverrides.error(path, "tensor '\(name)': '\(k)' is \(v), not a number", fix: "give one number")
            }
            if let t = first["quant_type"] {
                var text = (t as? String) ?? (t as? NSNumber).map { n in TensorQuantOverrides.typeValues.indices.contains(n.intValue) ? TensorQuantOverrides.typeValues[n.intValue] : "\(n)" } ?? "\(t)"
                if text.hasPrefix("QuantType.") { text.removeFirst("QuantType.".count) }
                guard TensorQuantOverrides.types[text] != nil else {
                    throw TensorQuantOverrides.error(path, "tensor '\(name)': quant_type '\(text)' is not one of ONNX Runtime's types", fix: "use \(TensorQuantOverrides.typeValues.joined(separator: ", "))")
                }
                e.quantType = text
            }
            e.symmetric = first["symmetric"] as? Bool
            e.axis = (first["axis"] as? NSNumber)?.intValue
            e.scale = try number("scale")
            e.zeroPoint = try number("zero_point").map { Int($0) }
            e.rmin = try number("rmin")
            e.rmax = try number("rmax")
            if (e.scale == nil) != (e.zeroPoint == nil) || (e.rmin == nil) != (e.rmax == nil) {
                throw TensorQuantOverrides.error(path, "tensor '\(name)' gives only one of scale/zero_point or of rmin/rmax", fix: "give both of the pair")
            }
            if let s = e.scale, !(s > 0 && s.isFinite) {
                throw TensorQuantOverrides.error(path, "tensor '\(name)': scale \(s) is not positive", fix: "give a positive scale")
            }
            if let lo = e.rmin, let hi = e.rmax, !(lo <= hi && lo.isFinite && hi.isFinite) {
                throw TensorQuantOverrides.error(path, "tensor '\(name)': rmin \(lo) is above rmax \(hi)", fix: "give rmin <= rmax")
            }
            if let k = first.keys.sorted().first(where: { ["convert", "reduce_range"].contains($0) }) {
                throw TensorQuantOverrides.error(path, "tensor '\(name)': '\(k)' has no QuantKit equivalent",
                                                 fix: k == "convert" ? "quantize the tensor's consumers in another type with the precision plan (--plan)" : "use --value-range for reduced weight ranges")
            }
            entries[name] = e
        }
        self.entries = entries
    }

    /// Checks every entry against the model's tensors, the weights (initializer names) and the
    /// run's activation grid and weight granularity.
    public func check(weights: Set<String>, tensors: Set<String>, activation: QuantGrid, perChannelWeights: Bool) throws {
        for (name, e) in entries.sorted(by: { $0.key < $1.key }) {
            guard tensors.contains(name) || weights.contains(name) else {
                throw TensorQuantOverrides.error(path, "tensor '\(name)' is not in the model", fix: "use the float model's tensor names (as ONNX Runtime's quantizer does)")
            }
            if weights.contains(name) {
                if e.scale != nil || e.rmin != nil {
                    throw TensorQuantOverrides.error(path, "weight '\(name)' is given a scale or range; QuantKit takes weight ranges from the weights",
                                                     fix: "drop scale/zero_point/rmin/rmax of weights (keep axis to say per channel)")
                }
                if (e.axis != nil) != perChannelWeights {
                    throw TensorQuantOverrides.error(path, "weight '\(name)' is \(e.axis != nil ? "per channel" : "per tensor") but the run quantizes weights \(perChannelWeights ? "per channel" : "per tensor")",
                                                     fix: perChannelWeights ? "add axis, or quantize per tensor (--no-per-channel-weights)" : "drop axis, or quantize per channel")
                }
                continue
            }
            if e.axis != nil || e.channels > 1 {
                throw TensorQuantOverrides.error(path, "activation '\(name)' has per-channel overrides", fix: "give activations one dictionary")
            }
            if let t = e.quantType, let g = TensorQuantOverrides.types[t] {
                if g.bits != activation.bits || g.signed != activation.signed || g.float8 != activation.float8 {
                    throw TensorQuantOverrides.error(path, "activation '\(name)' is \(t) but the run quantizes activations as \(TensorQuantOverrides.describe(activation))",
                                                     fix: "use the run's activation type, or set it with --activations (int16 for some ops: the precision plan, --plan)")
                }
            }
            if let s = e.symmetric, s != activation.symmetric {
                throw TensorQuantOverrides.error(path, "activation '\(name)' is symmetric=\(s) but the run's activations are \(activation.symmetric ? "symmetric" : "asymmetric")",
                                                 fix: "drop symmetric, or choose the activations option that matches")
            }
        }
    }

    static func describe(_ g: QuantGrid) -> String {
        if let f = g.float8 { return "\(f)" }
        return "\(g.signed ? "int" : "uint")\(g.bits)"
    }

    /// The clipping range the entry for `name` sets on `grid`, if any.
    public func range(_ name: String, grid: QuantGrid) -> ClipRange? {
        guard let e = entries[name] else { return nil }
        if let lo = e.rmin, let hi = e.rmax { return ClipRange(lo: lo, hi: hi) }
        if let s = e.scale, let z = e.zeroPoint {
            return ClipRange(lo: Double(grid.qmin - z) * s, hi: Double(grid.qmax - z) * s)
        }
        return nil
    }
}
