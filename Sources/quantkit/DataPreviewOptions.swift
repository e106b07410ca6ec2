import Foundation
import QuantData
import QuantKit

/// Turns `data-preview` options into the library's `DatasetConfig` (the same structure a
/// config file decodes into) and the input signatures (from the model or from --shape/--dtype).
struct DataPreviewOptions {
    let model: String?
    let data: DataArguments

    /// `name=value` options as pairs; QK7020 for a malformed one.
    /// `NAME=VALUE` options in order; a name given twice is refused (QK2101 for `--input`,
    /// QK7020 otherwise) rather than the later value silently winning.
    static func pairs(_ values: [String], option: String) throws -> [(String, String)] {
        var seen = Set<String>()
        return try values.map { v in
            guard let eq = v.firstIndex(of: "="), eq != v.startIndex else {
                throw QuantKitError("QK7020", "--\(option) '\(v)' is not name=value", fix: "write --\(option) INPUT_NAME=VALUE")
            }
            let name = String(v[..<eq])
            guard seen.insert(name).inserted else {
                if option == "input" { throw DataError.repeatedInput(name, option: "--input") }
                throw QuantKitError("QK7020", "--\(option) names '\(name)' twice", fix: "give --\(option) once per name")
            }
            return (name, String(v[v.index(after: eq)...]))
        }
    }

    static func numbers(_ s: String, option: String) throws -> [Double] {
        try s.split(separator: ",").map {
            guard let d = Double($0.trimmingCharacters(in: .whitespaces)) else {
                throw QuantKitError("QK7020", "--\(option) '\(s)' is not a comma-separated list of numbers", fix: "e.g. --\(option) 0.485,0.456,0.406")
            }
            return d
        }
    }

    static func dtype(_ s: String, option: String) throws -> DType {
        guard let t = DType(name: s) else { throw QuantKitError("QK7020", "--\(option) type '\(s)' is unknown", fix: "use float32, float16, uint8, int8, int32, int64, ...") }
        return t
    }

    /// A file name for an input's .npy (input names may hold '/' or ':').
    static func fileName(_ input: String) -> String {
        String(input.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" }) + ".npy"
    }

    func resolve() throws -> ([InputSignature], DatasetConfig) {
        let c = data
        let shapes = Dictionary(try DataPreviewOptions.pairs(c.shape, option: "shape"), uniquingKeysWith: { $1 })
        let dtypes = Dictionary(try DataPreviewOptions.pairs(c.dtype, option: "dtype"), uniquingKeysWith: { $1 })
        let sources = try DataPreviewOptions.pairs(c.inputs, option: "input")
        var signatures: [InputSignature]
        if let model = model {
            signatures = CalibrationDataset.signatures(of: try Model.load(path: model).graph)
        } else {
            let names = sources.map(\.0) + shapes.keys.filter { k in !sources.contains { $0.0 == k } }.sorted()
            signatures = try names.map { n in
                guard let s = shapes[n] else {
                    throw QuantKitError("QK7020", "input '\(n)' has no --shape and no model is given", fix: "pass the model, or --shape \(n)=1,3,224,224")
                }
                let dims = try DataPreviewOptions.numbers(s, option: "shape").map { Int($0) }
                return InputSignature(name: n, dtype: try DataPreviewOptions.dtype(dtypes[n] ?? "float32", option: "dtype"), shape: dims.map { $0 < 0 ? nil : $0 })
            }
        }
        var cfg: DatasetConfig
        if let stream = c.inputStream {
            if c.config != nil || !sources.isEmpty || c.list != nil {
                throw QuantKitError("QK7020", "--input-stream carries every input; it cannot be combined with --input, --list or --data-config",
                                    fix: "send every input on the stream, or give files without --input-stream")
            }
            cfg = DatasetConfig.streaming(stream, signatures: signatures, retainItems: 0)
            cfg.nonFinite = c.failOnNonfinite ? .fail : .warn
        } else if let path = c.config {
            do {
                cfg = try JSONDecoder().decode(DatasetConfig.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw QuantKitError("QK7020", "cannot read the data configuration '\(path)': \(error)", fix: "write a DatasetConfig JSON (see docs)")
            }
        } else {
            cfg = DatasetConfig(inputs: try inputConfigs(signatures, sources: sources, shapes: shapes, dtypes: dtypes))
            cfg.sharedList = c.list
            cfg.seed = c.seed ?? 0
            cfg.randomItems = c.randomItems
            cfg.symbolicDimDefault = c.defaultDim
            for (name, value) in try DataPreviewOptions.pairs(c.dims, option: "dim") {
                guard let v = Int(value) else { throw QuantKitError("QK7020", "--dim '\(name)=\(value)' is not SYMBOL=N", fix: "e.g. --dim sequence_length=128") }
                cfg.symbolicDims[name] = v
            }
            cfg.nonFinite = c.failOnNonfinite ? .fail : .warn
            cfg.python = c.python
        }
        if let b = c.batch { cfg.batchSize = b }
        if let s = c.steps { cfg.steps = s }
        if let s = c.seed { cfg.seed = s }
        c.applyLimits(&cfg)
        return (signatures, cfg)
    }

    func inputConfigs(_ signatures: [InputSignature], sources: [(String, String)], shapes: [String: String], dtypes: [String: String]) throws -> [InputConfig] {
        let c = data
        let fileTypes = Dictionary(try DataPreviewOptions.pairs(c.fileType, option: "file-type"), uniquingKeysWith: { $1 })
        let rawTypes = Dictionary(try DataPreviewOptions.pairs(c.rawDtype, option: "raw-dtype"), uniquingKeysWith: { $1 })
        let pre = Dictionary(try DataPreviewOptions.pairs(c.preprocess, option: "preprocess"), uniquingKeysWith: { $1 })
        var image: ImagePreprocessing = ImagePreprocessing()
        if let p = c.preset {
            guard let preset = ImagePreprocessing.preset(named: p) else {
                throw QuantKitError("QK7020", "--preset '\(p)' is unknown", fix: "use one of \(ImagePreprocessing.presetNames.joined(separator: ", "))")
            }
            image = preset
        }
        if let v = c.color { image.colorFormat = v }
        if let v = c.resize { image.resize = v }
        if let s = c.size {
            let hw = s.lowercased().split(separator: "x").compactMap { Int($0) }
            guard hw.count == 2 else { throw QuantKitError("QK7020", "--size '\(s)' is not HxW", fix: "e.g. --size 224x224, or --size 48x0 for a width that follows the aspect ratio") }
            image.size = hw
            // A side that follows the aspect ratio replaces a preset's shorter-side resize and crop.
            if hw.contains(0) && c.resizeShorter == nil && !c.centerCrop {
                image.resizeShorterSide = nil
                image.centerCrop = false
            }
        }
        if let v = c.resizeShorter { image.resizeShorterSide = v; image.centerCrop = true }
        if c.centerCrop { image.centerCrop = true }
        if let m = c.mean { image.mean = try DataPreviewOptions.numbers(m, option: "mean") }
        if let s = c.std { image.std = try DataPreviewOptions.numbers(s, option: "std") }
        if let s = c.scale { image.scale = s }
        if let l = c.layout { image.layout = l }
        var column = 0
        var configs: [InputConfig] = []
        let known = Set(signatures.map(\.name))
        for (name, _) in sources where !known.contains(name) {
            throw DataError.unknownInput(name, model: signatures.map(\.name))
        }
        for sig in signatures {
            let source: InputSource
            if let path = sources.last(where: { $0.0 == sig.name })?.1 {
                var isDir: ObjCBool = false
                let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
                if path == "random" { source = .random }
                else if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) ? isDir.boolValue : ext.isEmpty { source = .folder(path) }
                else if ["txt", "lst", "list"].contains(ext) { source = .list(path) }
                else { source = .files([path]) }
            } else if c.list != nil {
                source = .sharedList(column: column)
                column += 1
            } else {
                continue
            }
            var ic = InputConfig(name: sig.name, source: source)
            if let s = shapes[sig.name], model != nil { ic.shape = try DataPreviewOptions.numbers(s, option: "shape").map { Int($0) } }
            if let d = dtypes[sig.name] { ic.dtype = try DataPreviewOptions.dtype(d, option: "dtype") }
            if let f = fileTypes[sig.name] {
                guard let t = FileType(rawValue: f) else { throw QuantKitError("QK7020", "--file-type '\(f)' is unknown", fix: "use img, npy, raw or pb") }
                ic.fileType = t
            }
            if let r = rawTypes[sig.name] { ic.rawDType = try DataPreviewOptions.dtype(r, option: "raw-dtype") }
            ic.preprocessFile = pre[sig.name]
            ic.image = image
            configs.append(ic)
        }
        // A decoder's past key/value inputs without data start empty (the prefill).
        return DatasetConfig.withEmptyCaches(configs, signatures: signatures)
    }
}
