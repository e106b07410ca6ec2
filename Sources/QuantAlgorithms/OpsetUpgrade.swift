import QuantCore
import QuantIR

/// Raises a model below opset 10 to opset 11, float semantics unchanged.
///
/// QuantizeLinear and DequantizeLinear exist from opset 10, and ONNX Runtime's QDQ fusion writes
/// QLinearConv (opset 10) and, for a float bias, Round (opset 11) into the graph whatever the
/// model's opset: a QDQ model left at opset 9 does not load (the light_* models of the ONNX
/// wheel: AlexNet, VGG-19, ResNet-50, ... are opset 8 and 9). ONNX Runtime's own quantizer
/// upgrades such models to 11 as well.
///
/// Between opsets 9 and 11 these operators changed their signature and are rewritten:
/// Slice-1 (starts/ends/axes attributes → inputs), Clip-6 (min/max attributes → inputs),
/// Pad-2 (pads/value attributes → inputs), TopK-1 (k attribute → input), Upsample-7/9 →
/// Resize-11 (asymmetric coordinates, nearest rounding down, as Upsample computes), Scatter-9 →
/// ScatterElements-11 (the same operator renamed). The others keep their meaning at opset 11.
public enum OpsetUpgrade {
    public static let target = 11

    /// Upgrades `model` when its default-domain opset is below 10; returns the former opset, or
    /// nil when nothing changed. Throws QK7009 for an operator input the rewrite cannot express.
    ///
    /// Also raises an IR version below 4 to 4 (6 with the opset): before IR 4 every initializer
    /// had to be a graph input too, which the initializers quantization adds are not.
    public static func run(_ model: Model) throws -> Int? {
        if model.irVersion < 4 { model.extras.irVersion = 4 }
        guard let from = model.opsets[""], from < 10 else { return nil }
        model.extras.irVersion = max(model.extras.irVersion, 6)
        var names = NameAllocator(model.graph)
        for g in [model.graph] + model.graph.allSubgraphs {
            for n in g.nodes where n.isStandard { try convert(n, in: g, names: &names) }
        }
        for i in model.extras.opsetImport.indices where model.extras.opsetImport[i].domain.isEmpty || model.extras.opsetImport[i].domain == "ai.onnx" {
            model.extras.opsetImport[i].version = Int64(target)
        }
        return from
    }

    static func convert(_ n: Node, in g: Graph, names: inout NameAllocator) throws {
        func constant(_ suffix: String, _ t: Tensor) -> String {
            let name = names.fresh("\(n.name.isEmpty ? n.outputs.first ?? "node" : n.name)_\(suffix)")
            g.setInitializer(name, t)
            return name
        }
        func ints(_ suffix: String, _ v: [Int]) -> String { constant(suffix, Tensor(shape: [v.count], values: v.map(Int64.init))) }
        func drop(_ attrs: Set<String>) { n.attributes.removeAll { attrs.contains($0.name) } }
        switch n.opType {
        case "Slice" where n.inputs.count == 1:
            let starts = n.attribute("starts")?.ints ?? [], ends = n.attribute("ends")?.ints ?? []
            var inputs = [n.inputs[0], ints("starts", starts), ints("ends", ends)]
            if let axes = n.attribute("axes")?.ints { inputs.append(ints("axes", axes)) }
            n.inputs = inputs
            drop(["starts", "ends", "axes"])
        case "Clip" where n.inputs.count == 1:
            // The bounds become float scalars: right for the float models quantization takes (a
            // double or float16 Clip-6 would need bounds of its own type).
            let lo = n.attribute("min")?.float, hi = n.attribute("max")?.float
            n.inputs = [n.inputs[0], lo.map { constant("min", Tensor(shape: [], floats: [$0])) } ?? "",
                        hi.map { constant("max", Tensor(shape: [], floats: [$0])) } ?? ""]
            while n.inputs.count > 1 && n.inputs.last == "" { n.inputs.removeLast() }
            drop(["min", "max"])
        case "Pad" where n.inputs.count == 1:
            let pads = n.attribute("pads")?.ints ?? n.attribute("paddings")?.ints ?? []  // Pad-1 called them paddings
            let value = n.attribute("value")?.float ?? 0
            n.inputs = [n.inputs[0], ints("pads", pads)] + ((n.attribute("mode")?.string ?? "constant") == "constant" && value != 0
                ? [constant("value", Tensor(shape: [], floats: [value]))] : [])
            drop(["pads", "paddings", "value"])
        case "TopK" where n.inputs.count == 1:
            guard let k = n.attribute("k")?.int else { throw error(n, "has no k") }
            n.inputs = [n.inputs[0], ints("k", [k])]
            drop(["k"])
        case "Upsample":
            let mode = n.attribute("mode")?.string ?? "nearest"
            guard mode == "nearest" || mode == "linear" || mode == "bilinear" else { throw error(n, "has mode '\(mode)'") }
            var scales = n.inputs.count > 1 ? n.inputs[1] : ""
            if scales.isEmpty {
                guard let s = n.attribute("scales")?.floats, !s.isEmpty else { throw error(n, "has no scales") }
                scales = constant("scales", Tensor(shape: [s.count], floats: s))
            }
            n.opType = "Resize"
            n.inputs = [n.inputs[0], constant("roi", Tensor(shape: [0], floats: [])), scales]
            n.attributes = [.string("mode", mode == "nearest" ? "nearest" : "linear"), .string("coordinate_transformation_mode", "asymmetric")]
                + (mode == "nearest" ? [.string("nearest_mode", "floor")] : [])
        case "Scatter":
            n.opType = "ScatterElements"
        default:
            break
        }
    }

    /// Raises a model of opset 13 or later to `target` (at most 19: float8 QuantizeLinear and
    /// DequantizeLinear), float semantics unchanged. Between 13 and 19 only these change meaning:
    /// the Reduce ops other than ReduceSum take `axes` as an input from 18, and RoiAlign's default
    /// coordinate_transformation_mode changes at 16 (the old one is written out). Returns the former
    /// opset, or nil when nothing changed. Throws QK7005 below opset 13 (Softmax, Split,
    /// Squeeze, Unsqueeze and ReduceSum change at 13 and are not rewritten).
    public static func raise(_ model: Model, to target: Int, purpose: String) throws -> Int? {
        precondition(target <= 19)
        guard let from = model.opsets[""], from < target else { return nil }
        guard from >= 13 else {
            throw QuantKitError("QK7005", "\(purpose) needs opset \(target); QuantKit raises models from opset 13 or later, and this one is opset \(from)",
                                fix: "convert the model to opset 13 or later first (onnx.version_converter.convert_version), or use an integer format")
        }
        var names = NameAllocator(model.graph)
        let reduces: Set<String> = ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare"]
        for g in [model.graph] + model.graph.allSubgraphs {
            for n in g.nodes where n.isStandard {
                if from < 18, target >= 18, reduces.contains(n.opType), let axes = n.attribute("axes")?.ints {
                    let name = names.fresh((n.name.isEmpty ? n.outputs.first ?? "reduce" : n.name) + "_axes")
                    g.setInitializer(name, Tensor(shape: [axes.count], values: axes.map(Int64.init)))
                    n.inputs = [n.inputs.first ?? "", name]
                    n.attributes.removeAll { $0.name == "axes" }
                }
                if from < 16, target >= 16, n.opType == "RoiAlign", n.attribute("coordinate_transformation_mode") == nil {
                    n.setAttribute(.string("coordinate_transformation_mode", "output_half_pixel"))
                }
            }
        }
        for i in model.extras.opsetImport.indices where model.extras.opsetImport[i].domain.isEmpty || model.extras.opsetImport[i].domain == "ai.onnx" {
            model.extras.opsetImport[i].version = Int64(target)
        }
        model.extras.irVersion = max(model.extras.irVersion, 9)
        return from
    }

    static func error(_ n: Node, _ what: String) -> QuantKitError {
        QuantKitError("QK7009", "cannot raise \(n.label) to opset \(target) for quantization: it \(what)",
                      fix: "upgrade the model to opset 11 or later first (onnx.version_converter.convert_version), then quantize")
    }
}
