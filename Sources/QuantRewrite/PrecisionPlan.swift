import Foundation
import QuantCalibration
import QuantCore

/// What the rewrite does with each op: its precision, weight granularity and range method.
///
/// Written beside every quantized model as `NAME.plan.csv` (the plan the run used) and read
/// back with `--plan` (or Icraft's `mix_precision = "plan.csv"`): an edited plan re-runs from the
/// same statistics without calibrating again. The CSV has Icraft's column names (`op_id`,
/// `type`, `dtype`, `value_range_in_bits`, `per`, `saturation`) plus `node` (the node's name in
/// the prepared model, which wins over `op_id` when both are given) and `reason` (why an op
/// runs float; ignored when read).
///
/// Precisions: `int8` (the scheme's 8-bit activations and weights), `int16` (16-bit
/// activations, 8-bit weights), `fp16` and `bf16` (the op runs float on inputs rounded to that
/// format and its output is rounded to it: Cast pairs ONNX Runtime runs; a target runtime
/// computes the op in that format and drops the pairs), `fp32` (float).
public struct PrecisionPlan: Codable, Sendable, Equatable {
    public enum Precision: String, Codable, Sendable, CaseIterable, Comparable {
        case int8, int16, fp16, bf16, fp32

        /// Activation bits for the integer precisions.
        public var bits: Int? {
            switch self {
            case .int8: 8
            case .int16: 16
            default: nil
            }
        }

        public var isFloat: Bool { bits == nil }

        /// int8 < int16 < bf16 < fp16 < fp32: the order precision is raised in.
        var rank: Int {
            switch self {
            case .int8: 0
            case .int16: 1
            case .bf16: 2
            case .fp16: 3
            case .fp32: 4
            }
        }

        public static func < (a: Precision, b: Precision) -> Bool { a.rank < b.rank }
    }

    /// Weight scales: one per tensor, one per output channel, or one per group of N consecutive
    /// weights of an output channel's fan-in (`group=N`; Icraft's per = "group=N").
    public enum Granularity: Codable, Sendable, Equatable, Hashable {
        case tensor, channel, group(Int)

        /// `tensor`, `channel` or `group=N`, as the CSV and Icraft write it.
        public var text: String {
            switch self {
            case .tensor: "tensor"
            case .channel: "channel"
            case .group(let n): "group=\(n)"
            }
        }

        /// Parses `text` (case-insensitive; `group=N` with N ≥ 2), nil when it is none of them.
        public init?(text: String) {
            let t = text.trimmingCharacters(in: .whitespaces).lowercased()
            switch t {
            case "tensor": self = .tensor
            case "channel": self = .channel
            default:
                let parts = t.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, parts[0] == "group", let n = Int(parts[1]), n >= 2 else { return nil }
                self = .group(n)
            }
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            let s = try c.decode(String.self)
            guard let g = Granularity(text: s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(s)' is not tensor, channel or group=N (N >= 2)")
            }
            self = g
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encode(text)
        }

        /// The group size, nil for tensor or channel.
        public var groupSize: Int? {
            if case .group(let n) = self { return n }
            return nil
        }
    }

    public struct Op: Codable, Sendable, Equatable {
        /// Position among the prepared model's nodes (main graph, then If/Loop/Scan bodies depth
        /// first); -1 when a row gives only the node's name.
        public var opId: Int
        public var node: String
        public var type: String
        public var dtype: Precision
        /// Weight scales of a Conv/ConvTranspose/Gemm/MatMul with a constant weight; nil otherwise.
        public var per: Granularity?
        /// The range method of the op's activation tensors; nil: the scheme's.
        public var saturation: RangeMethod?
        /// Reduced value range (Icraft's value_range_in_bits): the op's activations on this many
        /// bits of their 8 (16) bit storage, and its weights on at most as many; nil: all of them.
        public var valueRangeInBits: Int?
        /// Why the op runs float (written, not read).
        public var reason: String?

        public init(opId: Int, node: String, type: String, dtype: Precision, per: Granularity? = nil, saturation: RangeMethod? = nil,
                    valueRangeInBits: Int? = nil, reason: String? = nil) {
            self.opId = opId
            self.node = node
            self.type = type
            self.dtype = dtype
            self.per = per
            self.saturation = saturation
            self.valueRangeInBits = valueRangeInBits
            self.reason = reason
        }
    }

    public var ops: [Op]

    public init(ops: [Op] = []) { self.ops = ops }

    /// The op for `node` (by name) at position `opId`: a row naming the node, or a row without a
    /// name at that position.
    public func op(node: String, opId: Int) -> Op? {
        byName[node] ?? byId[opId]
    }

    private var byName: [String: Op] { Dictionary(ops.filter { !$0.node.isEmpty }.map { ($0.node, $0) }, uniquingKeysWith: { a, _ in a }) }
    private var byId: [Int: Op] { Dictionary(ops.filter { $0.node.isEmpty }.map { ($0.opId, $0) }, uniquingKeysWith: { a, _ in a }) }

    /// The plan with `nodes` raised to at least `precision` (ops already higher keep theirs).
    public func raising(_ nodes: some Sequence<String>, to precision: Precision) -> PrecisionPlan {
        let set = Set(nodes)
        var p = self
        for k in p.ops.indices where set.contains(p.ops[k].node) && p.ops[k].dtype < precision {
            p.ops[k].dtype = precision
            p.ops[k].reason = nil
        }
        return p
    }

    // MARK: CSV

    static let columns = ["op_id", "node", "type", "dtype", "per", "saturation", "value_range_in_bits", "reason"]

    /// The plan as CSV (Icraft's columns plus `node` and `reason`), one row per op.
    public func csv() -> String {
        var out = Self.columns.joined(separator: ",") + "\n"
        for o in ops {
            let fields = [o.opId >= 0 ? "\(o.opId)" : "", o.node, o.type, o.dtype.rawValue, o.per?.text ?? "", o.saturation.map(Self.methodName) ?? "",
                          o.valueRangeInBits.map(String.init) ?? "", o.reason ?? ""]
            out += fields.map(Self.quoted).joined(separator: ",") + "\n"
        }
        return out
    }

    /// Reads a plan from CSV text (`path` names it in errors). Columns are found by their header
    /// names; `node` or `op_id` and `dtype` are required, the others optional.
    public init(csv text: String, path: String) throws {
        // A spreadsheet's UTF-8 byte order mark before the header is not part of the first column's name.
        var rows = Self.records(text.unicodeScalars.first == "\u{FEFF}" ? String(String.UnicodeScalarView(text.unicodeScalars.dropFirst())) : text).filter { !($0.count == 1 && $0[0].trimmingCharacters(in: .whitespaces).isEmpty) }
        guard !rows.isEmpty else { throw Self.error(path, line: 1, "is empty: it needs a header row (\(Self.columns.joined(separator: ",")))") }
        let header = rows.removeFirst().map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        func column(_ name: String) -> Int? { header.firstIndex(of: name) }
        if let unknown = header.first(where: { !Self.columns.contains($0) && !$0.isEmpty }) {
            throw Self.error(path, line: 1, "has an unknown column '\(unknown)' (known: \(Self.columns.joined(separator: ", ")))")
        }
        guard let dtypeColumn = column("dtype") else { throw Self.error(path, line: 1, "has no 'dtype' column") }
        guard column("node") != nil || column("op_id") != nil else { throw Self.error(path, line: 1, "has neither a 'node' nor an 'op_id' column") }
        var ops: [Op] = []
        var seen = Set<String>()
        for (k, row) in rows.enumerated() {
            let line = k + 2
            func field(_ name: String) -> String {
                guard let c = column(name), c < row.count else { return "" }
                return row[c].trimmingCharacters(in: .whitespaces)
            }
            let node = field("node"), idText = field("op_id")
            guard !node.isEmpty || !idText.isEmpty else { throw Self.error(path, line: line, "names no op: give 'node' or 'op_id'") }
            guard idText.isEmpty || Int(idText).map({ $0 >= 0 }) == true else {
                throw Self.error(path, line: line, "has op_id '\(idText)'; expected a whole number of 0 or more")
            }
            let text = dtypeColumn < row.count ? row[dtypeColumn].trimmingCharacters(in: .whitespaces).lowercased() : ""
            guard let dtype = Self.precision(text) else {
                throw Self.error(path, line: line, "has dtype '\(text)'; expected one of int8, int16, fp16, bf16, fp32 (float)")
            }
            let perText = field("per")
            var per: Granularity? = nil
            if !perText.isEmpty {
                guard let g = Granularity(text: perText) else {
                    throw Self.error(path, line: line, "has per '\(perText)'; expected channel, tensor or group=N (N a whole number of 2 or more)")
                }
                per = g
            }
            let satText = field("saturation")
            var saturation: RangeMethod? = nil
            if !satText.isEmpty {
                guard let m = Self.method(satText) else {
                    throw Self.error(path, line: line, "has saturation '\(satText)'; expected a range method (\(RangeMethod.names.joined(separator: ", ")), percentile(0.999), n_std(3))")
                }
                saturation = m
            }
            let vrText = field("value_range_in_bits")
            var valueRange: Int? = nil
            if !vrText.isEmpty {
                guard let v = Int(vrText) else { throw Self.error(path, line: line, "has value_range_in_bits '\(vrText)'; expected a number of bits") }
                guard let full = dtype.bits, (2...full).contains(v) else {
                    throw Self.error(path, line: line, "asks value_range_in_bits \(v) for \(dtype.rawValue); expected 2 to \(dtype.bits ?? 0) bits for an integer dtype, nothing for a float one")
                }
                valueRange = v == full ? nil : v
            }
            if !node.isEmpty {
                guard seen.insert(node).inserted else { throw Self.error(path, line: line, "names node '\(node)' a second time") }
            }
            ops.append(Op(opId: Int(idText) ?? -1, node: node, type: field("type"), dtype: dtype, per: per, saturation: saturation,
                          valueRangeInBits: valueRange, reason: field("reason").isEmpty ? nil : field("reason")))
        }
        self.ops = ops
    }

    /// Reads `path`: CSV, or JSON (`{"ops": [...]}`, this type's Codable form) when it ends in .json.
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw QuantKitError("QK5005", "precision plan '\(path)' cannot be read", fix: "check the path (a plan is NAME.plan.csv, written beside every quantized model)")
        }
        if path.lowercased().hasSuffix(".json") {
            do {
                self = try JSONDecoder().decode(PrecisionPlan.self, from: data)
            } catch {
                throw QuantKitError("QK5005", "precision plan '\(path)' is not a valid JSON plan: \(error)", fix: "write {\"ops\": [{\"opId\": 0, \"node\": NAME, \"type\": OP, \"dtype\": \"int8\"}, ...]} or use the CSV form")
            }
        } else {
            try self.init(csv: String(decoding: data, as: UTF8.self), path: path)
        }
    }

    /// Icraft's dtype names are accepted too (float32/float/fp32, float16/half, bfloat16).
    static func precision(_ s: String) -> Precision? {
        switch s {
        case "int8", "uint8", "s8", "u8": .int8
        case "int16", "uint16", "s16", "u16": .int16
        case "fp16", "float16", "half": .fp16
        case "bf16", "bfloat16": .bf16
        case "fp32", "float32", "float", "tf32": .fp32
        default: nil
        }
    }

    /// The method's name as written in a plan: its name, with the parameter in parentheses.
    public static func methodName(_ m: RangeMethod) -> String {
        switch m {
        case .kl(let s) where s != 1: "kl(\(s))"
        case .standardDeviations(let n): "n_std(\(n))"
        default: m.description
        }
    }

    /// Parses `methodName`'s form (and every name `RangeMethod(name:)` takes).
    static func method(_ s: String) -> RangeMethod? {
        let t = s.lowercased()
        guard let open = t.firstIndex(of: "("), t.hasSuffix(")") else { return RangeMethod(name: t) }
        let name = String(t[..<open]), arg = String(t[t.index(after: open)..<t.index(before: t.endIndex)])
        switch name {
        case "percentile": return Double(arg).flatMap { $0 > 0 && $0 <= 1 ? .percentile($0) : nil }
        case "n_std": return Double(arg).flatMap { $0 > 0 ? .standardDeviations($0) : nil }
        case "kl": return Int(arg).flatMap { $0 > 0 ? .kl(stride: $0) : nil }
        default: return nil
        }
    }

    /// `s` as one CSV field: in double quotes, with quotes doubled, when it holds a comma, quote
    /// or line break. Scalar by scalar: a quote followed by a combining mark is still a quote.
    static func quoted(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        var out = String.UnicodeScalarView()
        out.append("\"")
        for c in s.unicodeScalars {
            if c == "\"" { out.append(c) }
            out.append(c)
        }
        out.append("\"")
        return String(out)
    }

    /// CSV records: fields split on commas, rows on LF, CRLF or CR; double-quoted fields may hold
    /// commas, quotes ("") and line breaks. Read by Unicode scalars, not characters: a combining
    /// mark after a comma (one grapheme with it) must not hide the comma.
    static func records(_ text: String) -> [[String]] {
        var rows: [[String]] = [], row: [String] = []
        var field = String.UnicodeScalarView()
        var quoted = false
        var scalars = Array(text.unicodeScalars)[...]
        func endField() {
            row.append(String(field))
            field = String.UnicodeScalarView()
        }
        while let c = scalars.popFirst() {
            if quoted {
                if c == "\"" {
                    if scalars.first == "\"" { field.append(c); scalars.removeFirst() } else { quoted = false }
                } else {
                    field.append(c)
                }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                endField()
            } else if c == "\n" || c == "\r" {
                if c == "\r", scalars.first == "\n" { scalars.removeFirst() }
                endField()
                rows.append(row)
                row = []
            } else {
                field.append(c)
            }
        }
        if !field.isEmpty || !row.isEmpty {
            endField()
            rows.append(row)
        }
        return rows
    }

    static func error(_ path: String, line: Int, _ what: String, code: String = "QK5005") -> QuantKitError {
        QuantKitError(code, "precision plan '\(path)' line \(line) \(what)",
                      fix: code == "QK7005" ? "remove the value" : "edit the plan (NAME.plan.csv, written beside every quantized model, is a valid starting point)")
    }
}
