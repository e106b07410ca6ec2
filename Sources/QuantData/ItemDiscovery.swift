import Foundation

/// Finds the files of a folder or list-file source, without reading them.
public enum ItemDiscovery {
    /// Every file under `folder` whose extension is a supported type (or matches `fileType`),
    /// recursively, sorted by relative path in byte order so runs are deterministic across
    /// file systems. Hidden files and folders (names starting with '.') are skipped.
    public static func folder(_ folder: String, input: String, fileType: FileType?) throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw DataError.noItems(input: input, searched: folder, detail: "the folder does not exist")
        }
        let base = URL(fileURLWithPath: folder).standardizedFileURL.path
        guard let e = FileManager.default.enumerator(atPath: base) else {
            throw DataError.noItems(input: input, searched: folder, detail: "the folder cannot be listed")
        }
        var found: [String] = []
        while let rel = e.nextObject() as? String {
            if rel.split(separator: "/").contains(where: { $0.hasPrefix(".") }) { continue }
            let full = base + "/" + rel
            var d: ObjCBool = false
            guard FileManager.default.fileExists(atPath: full, isDirectory: &d), !d.boolValue else { continue }
            if let t = FileType.infer(path: rel), fileType == nil || t == fileType! { found.append(rel) }
            else if fileType == .raw { found.append(rel) }
        }
        found.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        if found.isEmpty { throw DataError.noItems(input: input, searched: folder) }
        return found.map { base + "/" + $0 }
    }

    /// Parses a list file into rows of resolved paths: one line per item, `;` between the files
    /// of several inputs, `#` starting a comment, blank lines ignored. Relative paths resolve
    /// against the list file's folder. Throws QK2113 (unreadable list, uneven columns) and
    /// QK2109 (a named file is missing).
    public static func list(_ path: String, checkExists: Bool = true) throws -> [[String]] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError.badList(list: path, line: nil, reason: "the list file does not exist or cannot be read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DataError.badList(list: path, line: nil, reason: "the list file is not UTF-8 text")
        }
        return try parse(text, listPath: path, checkExists: checkExists)
    }

    /// Parses list text; `listPath` gives the folder relative paths resolve against.
    public static func parse(_ text: String, listPath: String, checkExists: Bool = true) throws -> [[String]] {
        let dir = URL(fileURLWithPath: listPath).deletingLastPathComponent().standardizedFileURL.path
        var rows: [[String]] = []
        var width: Int?
        // Lines end at any newline: "\r\n" is one Character in Swift, so splitting on "\n" alone
        // read a CRLF file as one line.
        for (n, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let cols = trimmed.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if cols.contains(where: \.isEmpty) {
                throw DataError.badList(list: listPath, line: n + 1, reason: "an entry between ';' is empty")
            }
            if let w = width, w != cols.count {
                throw DataError.badList(list: listPath, line: n + 1, reason: "has \(cols.count) file(s) but earlier lines have \(w)")
            }
            width = cols.count
            let resolved = cols.map { $0.hasPrefix("/") ? $0 : dir + "/" + $0 }
            if checkExists {
                for (c, p) in zip(cols, resolved) where !FileManager.default.fileExists(atPath: p) {
                    throw DataError.missingListed(list: listPath, line: n + 1, file: c)
                }
            }
            rows.append(resolved)
        }
        return rows
    }
}
