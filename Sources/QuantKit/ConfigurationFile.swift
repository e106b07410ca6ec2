import Foundation
import QuantCore

extension QuantizerConfiguration {
    /// Reads an XQuant-style JSON (`.json`) or Icraft-style TOML (`.toml`, its `[quantize]`
    /// table) configuration. Throws QK7006 (unreadable or not JSON/TOML), QK7003 (unknown key,
    /// with the nearest valid key), QK7004 (a value of the wrong type or range), QK7005 (a key
    /// QuantKit does not implement) or QK7002 (unknown calibration type).
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError.unreadable(path, "the file does not exist or cannot be read")
        }
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "json":
            self = try QuantizerConfiguration.decode(json: data, path: path, schema: XQuantFile.schema, as: XQuantFile.self).configuration()
        case "toml":
            guard let text = String(data: data, encoding: .utf8) else { throw ConfigurationError.unreadable(path, "the file is not UTF-8 text") }
            let tree: [String: Any]
            do { tree = try TOMLReader.parse(text) } catch let e as TOMLReader.SyntaxError {
                throw ConfigurationError.unreadable(path, e.description)
            }
            if let (key, value) = QuantizerConfiguration.firstNonFinite(tree, path: "") {
                throw ConfigurationError.invalidValue(key, "\(value)", expected: "a finite number")
            }
            guard let q = tree["quantize"] as? [String: Any] else {
                throw ConfigurationError.missing("[quantize] table in '\(path)'", fix: "put the settings under a [quantize] table (Icraft style)")
            }
            let json = try JSONSerialization.data(withJSONObject: q)
            let autoTune = try (tree["AutoTune"] as? [String: Any]).map { try IcraftAutoTune.decode($0, path: path) }
            self = try QuantizerConfiguration.decode(json: json, path: path, schema: .object(["quantize": IcraftQuantize.schema]),
                                                      wrap: "quantize", as: IcraftQuantize.self).configuration(autoTune: autoTune)
        default:
            throw ConfigurationError.unreadable(path, "the extension is neither .json nor .toml")
        }
    }

    /// Checks keys against `schema`, then decodes; `wrap` names the table the object sits in
    /// (for key paths in messages).
    static func decode<T: Decodable>(json: Data, path: String, schema: KeySchema, wrap: String? = nil, as: T.Type) throws -> T {
        let tree: Any
        do {
            tree = try JSONSerialization.jsonObject(with: json)
        } catch {
            throw ConfigurationError.unreadable(path, "not valid JSON (\((error as NSError).userInfo["NSDebugDescription"] ?? error))")
        }
        // Foundation's parser accepts `[1, 2,]`; JSON does not, and the other tools reading the
        // same file would refuse it.
        if let (line, column) = trailingComma(in: json) {
            throw ConfigurationError.unreadable(path, "not valid JSON: a comma before a closing bracket or brace at line \(line), column \(column)")
        }
        guard tree is [String: Any] else { throw ConfigurationError.unreadable(path, "the top level is not an object") }
        try schema.check(wrap.map { [$0: tree] } ?? tree)
        do {
            return try JSONDecoder().decode(T.self, from: json)
        } catch let e as CodedError {
            throw e
        } catch {
            if var e = describeDecodingError(error) {
                // Foundation names no key for a number its type cannot hold (2.5 or -1 for a
                // count): find the number whose replacement makes the file decode.
                if case .dataCorrupted(let ctx)? = error as? DecodingError, ctx.codingPath.isEmpty,
                   let (key, value) = unfitNumber(in: tree, as: T.self) {
                    e = ConfigurationError.invalidValue(key, "\(value)", expected: "a number this key's type holds (a whole number, not negative, for counts and seeds)")
                }
                if let wrap, !e.message.hasPrefix(wrap + ".") { e = QuantKitError(e.code, "\(wrap).\(e.message)", fix: e.fix) }
                throw e
            }
            throw ConfigurationError.unreadable(path, "\(error)")
        }
    }

    /// Line and column (1-based) of the first comma followed only by white space before a `]`
    /// or `}`, outside strings.
    static func trailingComma(in json: Data) -> (Int, Int)? {
        var inString = false, escaped = false
        var comma: (Int, Int)? = nil
        var line = 1, column = 0
        for b in json {
            if b == UInt8(ascii: "\n") { line += 1; column = 0 } else { column += 1 }
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): continue
            case UInt8(ascii: ","): comma = (line, column)
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if let comma { return comma }
            case UInt8(ascii: "\""):
                inString = true
                comma = nil
            default: comma = nil
            }
        }
        return nil
    }

    /// The key path and value of the number that `T` cannot hold: among the numbers that are
    /// fractional, negative or beyond 2^53, the one whose replacement by 1 lets the file decode.
    static func unfitNumber<T: Decodable>(in tree: Any, as: T.Type) -> (String, Any)? {
        var numbers: [(path: [Any], text: String)] = []
        func walk(_ v: Any, _ path: [Any]) {
            if let d = v as? [String: Any] { for (k, x) in d.sorted(by: { $0.key < $1.key }) { walk(x, path + [k]) } }
            else if let a = v as? [Any] { for (i, x) in a.enumerated() { walk(x, path + [i]) } }
            else if !(v is Bool), let n = v as? NSNumber {
                let d = n.doubleValue
                if d != d.rounded() || d < 0 || abs(d) > 0x1p53 { numbers.append((path, "\(n)")) }
            }
        }
        walk(tree, [])
        func replacing(_ v: Any, _ path: ArraySlice<Any>) -> Any {
            guard let head = path.first else { return 1 }
            if var d = v as? [String: Any], let k = head as? String { d[k] = replacing(d[k] as Any, path.dropFirst()); return d }
            if var a = v as? [Any], let i = head as? Int { a[i] = replacing(a[i], path.dropFirst()); return a }
            return v
        }
        for n in numbers.prefix(200) {
            guard let data = try? JSONSerialization.data(withJSONObject: replacing(tree, n.path[...])),
                  (try? JSONDecoder().decode(T.self, from: data)) != nil else { continue }
            let key = n.path.reduce("") { p, k in k is Int ? "\(p)[\(k)]" : (p.isEmpty ? "\(k)" : "\(p).\(k)") }
            return (key, n.text)
        }
        return nil
    }

    /// The first non-finite float (nan, inf) of a TOML tree, with its key path: JSON, which the
    /// settings go through, has no spelling for them.
    static func firstNonFinite(_ v: Any, path: String) -> (String, Double)? {
        if let d = v as? Double, !d.isFinite { return (path, d) }
        if let t = v as? [String: Any] {
            for key in t.keys.sorted() {
                if let r = firstNonFinite(t[key]!, path: path.isEmpty ? key : "\(path).\(key)") { return r }
            }
        }
        if let a = v as? [Any] {
            for (k, e) in a.enumerated() { if let r = firstNonFinite(e, path: "\(path)[\(k)]") { return r } }
        }
        return nil
    }

    // MARK: - Values shared by the file formats and the command line

    /// Activations `u8` (uint8 asymmetric, the default), `s8` (int8 symmetric), `u16` (uint16
    /// asymmetric) or `s16` (int16 symmetric); weights int8 symmetric.
    public static func scheme(named name: String, key: String) throws -> QuantScheme {
        switch name.lowercased() {
        case "u8", "uint8": return .u8s8
        case "s8", "int8": return .s8s8
        case "u16", "uint16": return .a16w8
        case "s16", "int16": return QuantScheme(activation: QuantGrid(bits: 16, signed: true, symmetric: true))
        // Distiller's names: asym_u is u8; asym_s signed with a zero point; sym is s8.
        case "asym_u": return .u8s8
        case "asym_s": return QuantScheme(activation: QuantGrid(bits: 8, signed: true, symmetric: false))
        case "sym": return .s8s8
        // Float8 activations and weights (E4M3FN, or E5M2 with more range and less precision).
        case "e4m3fn", "fp8", "float8e4m3fn": return QuantScheme(activation: .float8(.float8e4m3fn), weight: .float8(.float8e4m3fn))
        case "e5m2", "float8e5m2": return QuantScheme(activation: .float8(.float8e5m2), weight: .float8(.float8e5m2))
        default: throw QuantKitError("QK7002", "\(key) '\(name)' is not a known activation scheme", fix: "use u8, s8, u16, s16, Distiller's asym_u, asym_s, sym, or float8 e4m3fn, e5m2")
        }
    }

    /// An element type by its ONNX or NumPy name; QK7004 otherwise.
    public static func dtype(_ name: String, key: String) throws -> DType {
        guard let t = DType(name: name) else {
            throw ConfigurationError.invalidValue(key, "'\(name)'", expected: "an element type such as float32, float16, uint8, int8, int16, int32, int64")
        }
        return t
    }

    /// `img`, `npy`, `raw` or `pb`; QK2107 (unsupported file type) otherwise.
    public static func fileType(_ name: String, key: String) throws -> FileType {
        guard let t = FileType(rawValue: name.lowercased()) else {
            throw QuantKitError("QK2107", "\(key) '\(name)' is not a supported file type",
                                fix: "use one of: \(FileType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return t
    }

    /// A value of a string enumeration (color format, resize method, layout); QK7004 otherwise.
    public static func choice<T: RawRepresentable & CaseIterable>(_ name: String, key: String) throws -> T where T.RawValue == String {
        guard let v = T(rawValue: name) ?? T(rawValue: name.lowercased()) else {
            throw ConfigurationError.invalidValue(key, "'\(name)'", expected: "one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
    }

    /// XQuant's precision_level for the whole model, as tuning settings: 0 all int8, the plain
    /// recipe (no repair); 1 partial int8 for performance: the loop to output cosine 0.99,
    /// int16 activations first, the fastest plan; 2 partial int8 for accuracy: the loop to
    /// output cosine 0.995, ops raised straight to float; 4 the whole model fp16 (no tuning; the
    /// caller sets `control.wholeModel`). 3 (dynamic quantization) throws QK7005.
    /// XQuant's `finetune_level`: 0 and 1 change nothing (1: XQuant may adjust static
    /// parameters; QuantKit's per-tensor method choice is its equivalent), 2 is AdaRound (PPQ's
    /// rounding refinement), 3 (block reconstruction) throws QK7005.
    public static func finetuneLevel(_ level: Int, key: String) throws -> WeightRounding? {
        switch level {
        case 0, 1: return nil
        case 2: return .adaround
        case 3:
            throw ConfigurationError.notImplemented(key, "3", detail: "block reconstruction (BRECQ) is not implemented; level 2 is AdaRound, layer by layer")
        default:
            throw ConfigurationError.invalidValue(key, "\(level)", expected: "0, 1, 2 or 3")
        }
    }

    public static func precisionLevel(_ level: Int, key: String) throws -> TuningOptions {
        switch level {
        case 0: return TuningOptions(target: nil)
        case 1: return TuningOptions(target: .standard, priority: .performance)
        case 2: return TuningOptions(target: TuningTarget(metric: .cosine, value: 0.995), priority: .accuracy)
        case 3: throw ConfigurationError.notImplemented(key, "3", detail: "dynamic quantization is not implemented; use 0, 1 or 2")
        case 4: return TuningOptions(target: nil)   // the whole model fp16: the caller sets control.wholeModel
        default: throw ConfigurationError.invalidValue(key, "\(level)", expected: "0, 1, 2, 3 or 4")
        }
    }

    /// A Concat split ratio (`--concat-split-ratio`, `concat_split_ratio`): 0 (one shared scale)
    /// or a finite factor of 1 or more.
    public static func checkConcatSplitRatio(_ r: Double, key: String) throws -> Double {
        guard r.isFinite, r == 0 || r >= 1 else {
            throw ConfigurationError.invalidValue(key, "\(r)", expected: "0 (always share one scale) or a factor of 1 or more, e.g. 16")
        }
        return r
    }
}
