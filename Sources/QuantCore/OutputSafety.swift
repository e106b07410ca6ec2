import Foundation

/// The file a path names, after following symbolic links: device and inode. Two paths name the
/// same file exactly when their identities are equal (a symlink, a symlinked folder, `./`,
/// `..` or a hard link make different strings for one file).
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64

    /// nil when nothing exists at `path`.
    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
    }
}

/// Refuses to write an output over one of the command's inputs, or two outputs to one file.
///
/// An output that exists is compared by `FileIdentity` with every input; one that does not
/// exist yet cannot be an existing input, but two of them can coincide, so those are compared
/// by their folder's identity and their name.
public enum OutputSafety {
    /// A file a command reads or writes, with the role named in errors ("the input model",
    /// "calibration file", "--stats-out").
    public struct Item: Sendable {
        public let role: String
        public let path: String
        public init(_ role: String, _ path: String) {
            self.role = role
            self.path = path
        }
    }

    /// Throws QK7001 when an output is an input or two outputs are one file.
    public static func check(outputs: [Item], inputs: [Item]) throws {
        var inputIDs: [FileIdentity: Item] = [:]
        var inputPaths: [String: Item] = [:]  // also for inputs that do not exist (yet)
        func lexical(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.path }
        for i in inputs {
            if let id = FileIdentity(path: i.path), inputIDs[id] == nil { inputIDs[id] = i }
            if inputPaths[lexical(i.path)] == nil { inputPaths[lexical(i.path)] = i }
        }
        var outputKeys: [String: Item] = [:]
        for o in outputs {
            if let i = FileIdentity(path: o.path).flatMap({ inputIDs[$0] }) ?? inputPaths[lexical(o.path)] {
                throw QuantKitError("QK7001", "\(o.role) '\(o.path)' is \(i.role) '\(i.path)'",
                                    fix: "choose another output path; QuantKit never overwrites what it reads")
            }
            let url = URL(fileURLWithPath: o.path)
            let folder = FileIdentity(path: url.deletingLastPathComponent().path).map { "\($0.device):\($0.inode)" } ?? url.deletingLastPathComponent().standardized.path
            let key = folder + "/" + url.lastPathComponent
            if let other = outputKeys[key] {
                throw QuantKitError("QK7001", "\(o.role) '\(o.path)' and \(other.role) '\(other.path)' are the same file",
                                    fix: "choose output paths that differ (a model named like a side output, NAME.qparams.json or NAME.report.json, collides with it)")
            }
            outputKeys[key] = o
        }
    }
}
