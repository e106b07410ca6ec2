import Foundation

/// A TOML 1.0 reader for Icraft-style configuration files, producing the JSON-compatible tree
/// (`[String: Any]` of `String`, `Int`, `Double`, `Bool`, arrays and tables) that the JSON
/// configurations are decoded from.
///
/// Written here rather than taken from TOMLKit 0.6: its bundled toml++ asserts (aborts the
/// process) on malformed input such as a table header whose key starts with `#`, and a
/// configuration file must never crash the tool. Everything of TOML 1.0 except dates and times
/// is read (they are refused with their position: no QuantKit key takes one): bare, quoted and
/// dotted keys, tables and arrays of tables, basic and literal strings (multi-line too),
/// integers (decimal, hex, octal, binary, `_` separators), floats (`inf`, `nan`), booleans,
/// arrays and inline tables. Nesting deeper than `maxDepth` is refused.
struct TOMLReader {
    struct SyntaxError: Error, CustomStringConvertible {
        let line: Int
        let column: Int
        let message: String
        var description: String { "TOML syntax error at line \(line), column \(column): \(message)" }
    }

    /// A table while it is being filled; `implicit` tables were created by a dotted key or
    /// header and may still be defined by a header of their own.
    final class Table {
        var entries: [String: Any] = [:]
        var implicit = false
        var defined = false
        var inline = false
    }

    /// Arrays of tables (`[[name]]`), kept apart from value arrays so that a header can extend them.
    final class TableArray {
        var tables: [Table] = []
    }

    static let maxDepth = 64

    private let s: [UInt8]
    private var i = 0
    private var line = 1
    private var lineStart = 0
    private let root = Table()
    private var current: Table

    private init(_ text: String) {
        s = Array(text.utf8)
        current = root
    }

    /// Parses `text` into a JSON-compatible tree.
    static func parse(_ text: String) throws -> [String: Any] {
        var r = TOMLReader(text)
        try r.document()
        return TOMLReader.plain(r.root)
    }

    private static func plain(_ t: Table) -> [String: Any] { t.entries.mapValues(plain) }

    private static func plain(_ v: Any) -> Any {
        switch v {
        case let t as Table: return plain(t)
        case let a as TableArray: return a.tables.map { plain($0) as Any }
        case let a as [Any]: return a.map(plain)
        default: return v
        }
    }

    // MARK: Lexing helpers

    private var atEnd: Bool { i >= s.count }
    private var c: UInt8 { s[i] }

    private func fail(_ message: String) -> SyntaxError {
        SyntaxError(line: line, column: i - lineStart + 1, message: message)
    }

    private mutating func skipSpaces() {
        while !atEnd, c == 0x20 || c == 0x09 { i += 1 }
    }

    private mutating func skipComment() throws {
        guard !atEnd, c == UInt8(ascii: "#") else { return }
        while !atEnd, c != 0x0A {
            if c == 0x0D, i + 1 < s.count, s[i + 1] == 0x0A { break }
            i += 1
        }
    }

    /// Consumes a newline (LF or CRLF); false when there is none here.
    private mutating func newline() throws -> Bool {
        if !atEnd, c == 0x0A {
            i += 1
            line += 1
            lineStart = i
            return true
        }
        if !atEnd, c == 0x0D {
            guard i + 1 < s.count, s[i + 1] == 0x0A else { throw fail("a carriage return not followed by a line feed") }
            i += 2
            line += 1
            lineStart = i
            return true
        }
        return false
    }

    /// Spaces, comments and newlines (inside arrays).
    private mutating func skipBlank() throws {
        while true {
            skipSpaces()
            try skipComment()
            if try !newline() { return }
        }
    }

    private mutating func expect(_ ch: Character) throws {
        guard !atEnd, c == ch.asciiValue! else { throw fail("expected '\(ch)'") }
        i += 1
    }

    // MARK: Document

    private mutating func document() throws {
        while true {
            skipSpaces()
            try skipComment()
            if atEnd { return }
            if try newline() { continue }
            if c == UInt8(ascii: "[") {
                try header()
            } else {
                try keyValue(into: current, depth: 0)
            }
            skipSpaces()
            try skipComment()
            if atEnd { return }
            guard try newline() else { throw fail("expected the end of the line") }
        }
    }

    private mutating func header() throws {
        i += 1
        let isArray = !atEnd && c == UInt8(ascii: "[")
        if isArray { i += 1 }
        skipSpaces()
        let path = try key()
        skipSpaces()
        try expect("]")
        if isArray { try expect("]") }
        var t = root
        for (k, name) in path.enumerated() {
            let last = k == path.count - 1
            if last && isArray {
                let array: TableArray
                if let a = t.entries[name] as? TableArray {
                    array = a
                } else if t.entries[name] == nil {
                    array = TableArray()
                    t.entries[name] = array
                } else {
                    throw fail("'\(name)' is already defined and is not an array of tables")
                }
                let next = Table()
                next.defined = true
                array.tables.append(next)
                t = next
            } else if let sub = t.entries[name] as? Table {
                if sub.inline { throw fail("'\(name)' is an inline table and cannot be extended") }
                if last {
                    if sub.defined { throw fail("table '\(path.joined(separator: "."))' is defined twice") }
                    sub.defined = true
                    sub.implicit = false
                }
                t = sub
            } else if let a = t.entries[name] as? TableArray, !last {
                guard let lastTable = a.tables.last else { throw fail("'\(name)' is an empty array of tables") }
                t = lastTable
            } else if t.entries[name] == nil {
                let sub = Table()
                sub.implicit = !last
                sub.defined = last
                t.entries[name] = sub
                t = sub
            } else {
                throw fail("'\(name)' is already defined as a value")
            }
        }
        current = t
    }

    /// `key = value` into `table` (dotted keys create the tables between).
    private mutating func keyValue(into table: Table, depth: Int) throws {
        let path = try key()
        skipSpaces()
        try expect("=")
        skipSpaces()
        let v = try value(depth: depth)
        var t = table
        for name in path.dropLast() {
            if let sub = t.entries[name] as? Table {
                if sub.inline { throw fail("'\(name)' is an inline table and cannot be extended") }
                t = sub
            } else if t.entries[name] == nil {
                let sub = Table()
                sub.implicit = true
                t.entries[name] = sub
                t = sub
            } else {
                throw fail("'\(name)' is already defined as a value")
            }
        }
        let last = path[path.count - 1]
        guard t.entries[last] == nil else { throw fail("key '\(path.joined(separator: "."))' is defined twice") }
        t.entries[last] = v
    }

    /// A bare, quoted or dotted key, as its parts.
    private mutating func key() throws -> [String] {
        var parts: [String] = []
        while true {
            skipSpaces()
            guard !atEnd else { throw fail("expected a key") }
            if c == UInt8(ascii: "\"") {
                parts.append(try basicString())
            } else if c == UInt8(ascii: "'") {
                parts.append(try literalString())
            } else {
                let start = i
                while !atEnd, TOMLReader.isBareKey(c) { i += 1 }
                guard i > start else { throw fail("expected a key (letters, digits, '_', '-' or a quoted string)") }
                parts.append(String(decoding: s[start..<i], as: UTF8.self))
            }
            skipSpaces()
            guard !atEnd, c == UInt8(ascii: ".") else { return parts }
            i += 1
        }
    }

    private static func isBareKey(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
    }

    // MARK: Values

    private mutating func value(depth: Int) throws -> Any {
        guard depth < TOMLReader.maxDepth else { throw fail("values nested deeper than \(TOMLReader.maxDepth) levels") }
        guard !atEnd else { throw fail("expected a value") }
        switch c {
        case UInt8(ascii: "\""): return try basicString()
        case UInt8(ascii: "'"): return try literalString()
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "{"): return try inlineTable(depth: depth + 1)
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if match("true") { return true }
            if match("false") { return false }
            throw fail("expected a value")
        default: return try number()
        }
    }

    private mutating func match(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard i + w.count <= s.count, Array(s[i..<(i + w.count)]) == w else { return false }
        let next = i + w.count
        if next < s.count, TOMLReader.isBareKey(s[next]) { return false }
        i = next
        return true
    }

    private mutating func array(depth: Int) throws -> [Any] {
        i += 1
        var items: [Any] = []
        while true {
            try skipBlank()
            guard !atEnd else { throw fail("an array is not closed") }
            if c == UInt8(ascii: "]") {
                i += 1
                return items
            }
            items.append(try value(depth: depth))
            try skipBlank()
            guard !atEnd else { throw fail("an array is not closed") }
            if c == UInt8(ascii: ",") {
                i += 1
            } else if c != UInt8(ascii: "]") {
                throw fail("expected ',' or ']' in an array")
            }
        }
    }

    private mutating func inlineTable(depth: Int) throws -> Table {
        i += 1
        let t = Table()
        t.inline = true
        t.defined = true
        skipSpaces()
        if !atEnd, c == UInt8(ascii: "}") {
            i += 1
            return t
        }
        while true {
            try keyValue(into: t, depth: depth)
            skipSpaces()
            guard !atEnd else { throw fail("an inline table is not closed") }
            if c == UInt8(ascii: "}") {
                i += 1
                return t
            }
            guard c == UInt8(ascii: ",") else { throw fail("expected ',' or '}' in an inline table (which must stay on one line)") }
            i += 1
            skipSpaces()
        }
    }

    private mutating func number() throws -> Any {
        let start = i
        while !atEnd, TOMLReader.isBareKey(c) || c == UInt8(ascii: "+") || c == UInt8(ascii: ".") || c == UInt8(ascii: ":") { i += 1 }
        let text = String(decoding: s[start..<i], as: UTF8.self)
        func bad() -> SyntaxError {
            SyntaxError(line: line, column: start - lineStart + 1, message: "'\(text)' is not a TOML value")
        }
        guard !text.isEmpty else { throw bad() }
        if text.contains(":") || (text.count >= 5 && text.dropFirst(4).first == "-" && text.prefix(4).allSatisfy(\.isNumber)) {
            throw SyntaxError(line: line, column: start - lineStart + 1, message: "dates and times are not supported ('\(text)')")
        }
        let sign = text.first == "+" || text.first == "-" ? String(text.first!) : ""
        let body = sign.isEmpty ? Substring(text) : text.dropFirst()
        switch body {
        case "inf": return sign == "-" ? -Double.infinity : Double.infinity
        case "nan": return Double.nan
        default: break
        }
        // Underscores only between digits.
        let chars = Array(body)
        for (k, ch) in chars.enumerated() where ch == "_" {
            guard k > 0, k < chars.count - 1, chars[k - 1].isHexDigit, chars[k + 1].isHexDigit else { throw bad() }
        }
        let digits = body.replacingOccurrences(of: "_", with: "")
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where digits.hasPrefix(prefix) {
            guard sign.isEmpty, let v = Int(digits.dropFirst(2), radix: radix) else { throw bad() }
            return v
        }
        guard let first = digits.first, first.isNumber else { throw bad() }
        // Leading zeros are not allowed ("007"), a lone 0 or "0.5" is.
        if first == "0", digits.count > 1, let second = digits.dropFirst().first, second.isNumber { throw bad() }
        if digits.allSatisfy(\.isNumber) {
            guard let v = Int(sign + digits) else { throw bad() }
            return v
        }
        // A float: digits, an optional fraction with digits, an optional exponent.
        let pattern = #"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"#
        guard digits.range(of: pattern, options: .regularExpression) != nil, let v = Double(sign + digits) else { throw bad() }
        return v
    }

    // MARK: Strings

    private mutating func basicString() throws -> String {
        if i + 2 < s.count, s[i + 1] == UInt8(ascii: "\""), s[i + 2] == UInt8(ascii: "\"") { return try multilineBasic() }
        i += 1
        var out: [UInt8] = []
        while true {
            guard !atEnd, c != 0x0A, c != 0x0D else { throw fail("a string is not closed on its line") }
            let b = c
            i += 1
            if b == UInt8(ascii: "\"") { break }
            if b == UInt8(ascii: "\\") { try escape(into: &out) } else {
                guard b >= 0x20 || b == 0x09, b != 0x7F else { throw fail("a control character in a string") }
                out.append(b)
            }
        }
        return try utf8(out)
    }

    private mutating func multilineBasic() throws -> String {
        i += 3
        if try newline() {}  // a newline right after the opening quotes is trimmed
        var out: [UInt8] = []
        while true {
            switch try multilineEdge(UInt8(ascii: "\""), &out) {
            case .closed: return try utf8(out)
            case .newline: continue
            case .content: break
            }
            let b = c
            i += 1
            if b == UInt8(ascii: "\\") {
                // A line-ending backslash trims the newline and the white space after it.
                var k = i
                while k < s.count, s[k] == 0x20 || s[k] == 0x09 { k += 1 }
                if k < s.count, s[k] == 0x0A || s[k] == 0x0D {
                    i = k
                    while true {
                        skipSpaces()
                        if try !newline() { break }
                    }
                    continue
                }
                try escape(into: &out)
            } else {
                guard b >= 0x20 || b == 0x09, b != 0x7F else { throw fail("a control character in a string") }
                out.append(b)
            }
        }
    }

    enum MultilineEdge { case closed, newline, content }

    /// In a multi-line string delimited by three `quote`s: consumes the closing delimiter (up to
    /// two more quotes belong to the content) or a newline (kept as "\n"); `.content` leaves
    /// the current byte to the caller.
    private mutating func multilineEdge(_ quote: UInt8, _ out: inout [UInt8]) throws -> MultilineEdge {
        guard !atEnd else { throw fail("a multi-line string is not closed") }
        if c == quote, i + 2 < s.count, s[i + 1] == quote, s[i + 2] == quote {
            i += 3
            var extra = 0
            while extra < 2, !atEnd, c == quote { out.append(c); i += 1; extra += 1 }
            return .closed
        }
        if c == 0x0A || c == 0x0D {
            out.append(0x0A)
            _ = try newline()
            return .newline
        }
        return .content
    }

    private mutating func escape(into out: inout [UInt8]) throws {
        guard !atEnd else { throw fail("a string is not closed") }
        let e = c
        i += 1
        switch e {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "\""): out.append(e)
        case UInt8(ascii: "\\"): out.append(e)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let n = e == UInt8(ascii: "u") ? 4 : 8
            guard i + n <= s.count, let v = UInt32(String(decoding: s[i..<(i + n)], as: UTF8.self), radix: 16),
                  let scalar = Unicode.Scalar(v) else { throw fail("an invalid \\u escape") }
            i += n
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
        default: throw fail("an unknown escape '\\\(Character(Unicode.Scalar(e)))'")
        }
    }

    private mutating func literalString() throws -> String {
        if i + 2 < s.count, s[i + 1] == UInt8(ascii: "'"), s[i + 2] == UInt8(ascii: "'") {
            i += 3
            if try newline() {}
            var out: [UInt8] = []
            while true {
                switch try multilineEdge(UInt8(ascii: "'"), &out) {
                case .closed: return try utf8(out)
                case .newline: continue
                case .content: break
                }
                out.append(c)
                i += 1
            }
        }
        i += 1
        let start = i
        while !atEnd, c != UInt8(ascii: "'") {
            guard c != 0x0A, c != 0x0D else { throw fail("a string is not closed on its line") }
            i += 1
        }
        guard !atEnd else { throw fail("a string is not closed") }
        let text = try utf8(Array(s[start..<i]))
        i += 1
        return text
    }

    private func utf8(_ bytes: [UInt8]) throws -> String {
        guard let t = String(validating: bytes, as: UTF8.self) else { throw fail("a string is not valid UTF-8") }
        return t
    }
}
