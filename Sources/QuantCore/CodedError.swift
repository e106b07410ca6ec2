/// The error every user-facing failure in QuantKit conforms to.
///
/// `code` is stable across releases (`QKnnnn`, grouped by stage: 1xxx model I/O and IR,
/// 2xxx calibration data, 3xxx executor, 4xxx calibration, 5xxx quantization, 6xxx analysis,
/// 7xxx configuration and command line). `subject` names the file, node or tensor concerned and
/// `fix` says what the user can do. docs/ERRORS.md lists every code.
public protocol CodedError: Error, CustomStringConvertible, Sendable {
    var code: String { get }
    var message: String { get }
    var fix: String { get }
}

extension CodedError {
    public var description: String {
        fix.isEmpty ? "\(code) \(message)" : "\(code) \(message); \(fix)"
    }
}

/// A coded error whose message and fix are plain strings, used by each stage's error factory.
public struct QuantKitError: CodedError, Equatable {
    public let code: String
    public let message: String
    public let fix: String

    public init(_ code: String, _ message: String, fix: String = "") {
        self.code = code
        self.message = message
        self.fix = fix
    }
}
