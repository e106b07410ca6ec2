import Foundation
import QuantCalibration
import QuantCore

/// The configuration errors (codes QK7002–QK7007). Each names the key (as a dotted path such
/// as `calibration_parameters.input_parametres[0].file_type`) and says what to write instead;
/// docs/ERRORS.md ("7xxx") lists them.
public enum ConfigurationError {
    /// QK7002: an unknown range method (`calibration_type`, `saturation`, `--method`).
    public static func unknownMethod(_ name: String, key: String) -> QuantKitError {
        QuantKitError("QK7002", "\(key) '\(name)' is not a known calibration type",
                      fix: "use one of: \(RangeMethod.names.joined(separator: ", "))")
    }

    /// QK7003: a key the format does not have; suggests the nearest valid key.
    public static func unknownKey(_ key: String, at path: String, valid: [String]) -> QuantKitError {
        let full = path.isEmpty ? key : "\(path).\(key)"
        if let near = nearest(key, in: valid) {
            return QuantKitError("QK7003", "unknown key '\(full)'", fix: "did you mean '\(near)'? Valid keys here: \(valid.joined(separator: ", "))")
        }
        return QuantKitError("QK7003", "unknown key '\(full)'", fix: "valid keys here: \(valid.joined(separator: ", "))")
    }

    /// QK7004: a value of the wrong type or out of range.
    public static func invalidValue(_ key: String, _ value: String, expected: String) -> QuantKitError {
        QuantKitError("QK7004", "\(key) is \(value)", fix: "expected \(expected)")
    }

    /// QK7004 unless `bins` is within `ObserverOptions.binRange` (the one check for the CLI's
    /// `--bins`, `bins` / Icraft `bin_num` in files, and `calibrate`).
    public static func checkBins(_ bins: Int) throws {
        let r = ObserverOptions.binRange
        guard r.contains(bins) else {
            throw invalidValue("bins", "\(bins)", expected: "\(r.lowerBound) to \(r.upperBound) histogram bins (2048 by default)")
        }
    }

    /// QK7005: a key QuantKit accepts but does not implement (or a value of it).
    public static func notImplemented(_ key: String, _ value: String, detail: String) -> QuantKitError {
        QuantKitError("QK7005", "\(key) = \(value) is not implemented in QuantKit", fix: detail)
    }

    /// QK7006: the configuration file cannot be read or parsed.
    public static func unreadable(_ path: String, _ reason: String) -> QuantKitError {
        QuantKitError("QK7006", "cannot read the configuration '\(path)': \(reason)",
                      fix: "check the path; the file must be XQuant-style JSON (.json) or an Icraft-style TOML with a [quantize] table (.toml)")
    }

    /// QK7007: a required setting is missing.
    public static func missing(_ what: String, fix: String) -> QuantKitError {
        QuantKitError("QK7007", "the configuration gives no \(what)", fix: fix)
    }

    /// The valid key closest to `key` by edit distance, when close enough to be a typo
    /// (at most a third of the key's length, and at least 2 edits allowed).
    public static func nearest(_ key: String, in valid: [String]) -> String? {
        let scored = valid.map { ($0, editDistance(key.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(2, key.count / 3) ? best.0 : nil
    }

    /// Levenshtein distance: the fewest single-character insertions, deletions and
    /// substitutions turning `a` into `b`.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let substitution = previous + (a[i - 1] == b[j - 1] ? 0 : 1)
                previous = row[j]
                row[j] = min(substitution, row[j] + 1, row[j - 1] + 1)
            }
        }
        return row[b.count]
    }
}

/// Maps Foundation's decoding errors to QK7004 with the key path.
func describeDecodingError(_ error: Error) -> QuantKitError? {
    func path(_ ctx: DecodingError.Context) -> String {
        ctx.codingPath.reduce("") { p, k in
            if let i = k.intValue { return "\(p)[\(i)]" }
            return p.isEmpty ? k.stringValue : "\(p).\(k.stringValue)"
        }
    }
    guard let e = error as? DecodingError else { return nil }
    switch e {
    case .typeMismatch(let type, let ctx):
        return ConfigurationError.invalidValue(path(ctx), "of the wrong type", expected: "a value of type \(type)")
    case .valueNotFound(let type, let ctx):
        return ConfigurationError.invalidValue(path(ctx), "null", expected: "a value of type \(type)")
    case .keyNotFound(let key, let ctx):
        let p = path(ctx)
        return ConfigurationError.missing("'\(p.isEmpty ? key.stringValue : "\(p).\(key.stringValue)")'", fix: "add the key")
    case .dataCorrupted(let ctx):
        return ConfigurationError.invalidValue(path(ctx).isEmpty ? "the file" : path(ctx), "malformed (\(ctx.debugDescription))", expected: "valid JSON/TOML")
    @unknown default:
        return nil
    }
}
