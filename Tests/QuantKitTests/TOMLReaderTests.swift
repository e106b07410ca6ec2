import Foundation
import Testing
@testable import QuantKit

// TOMLReader against hand-written documents (TOML 1.0 spec examples) and malformed ones.

@Test func tomlReaderReadsTheSpecsValueKinds() throws {
    let t = try TOMLReader.parse(#"""
        # comment
        title = "TOML \"quoted\" \u00e9"   # trailing comment
        'literal key' = 'C:\path'
        "quoted.key" = 1
        site."google.com" = true
        ints = [+99, 42, 0, -17, 1_000, 0xDEAD_beef, 0o755, 0b1101]
        floats = [1.0, -0.01, 5e+22, 6.626e-34, 224_617.445_991, -inf, nan]
        multi = """
        Roses \
            are red
        two"""
        raw = '''
        first
        second'''
        nested = [[1, 2], ["a", 'b'], [],]
        point = { x = 1, y.z = 2 }

        [server.alpha]
        ip = "10.0.0.1"

        [[products]]
        name = "Hammer"
        [[products]]
        name = "Nail"
        """#)
    #expect(t["title"] as? String == "TOML \"quoted\" é")
    #expect(t["literal key"] as? String == #"C:\path"#)
    #expect(t["quoted.key"] as? Int == 1)
    #expect((t["site"] as? [String: Any])?["google.com"] as? Bool == true)
    #expect(t["ints"] as? [Int] == [99, 42, 0, -17, 1000, 0xDEADBEEF, 0o755, 0b1101])
    let floats = t["floats"] as? [Double] ?? []
    #expect(Array(floats.prefix(6)) == [1.0, -0.01, 5e22, 6.626e-34, 224617.445991, -.infinity] && floats.last?.isNaN == true)
    #expect(t["multi"] as? String == "Roses are red\ntwo")
    #expect(t["raw"] as? String == "first\nsecond")
    #expect((t["nested"] as? [Any])?.count == 3)
    let point = t["point"] as? [String: Any]
    #expect(point?["x"] as? Int == 1 && (point?["y"] as? [String: Any])?["z"] as? Int == 2)
    #expect(((t["server"] as? [String: Any])?["alpha"] as? [String: Any])?["ip"] as? String == "10.0.0.1")
    #expect((t["products"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["Hammer", "Nail"])
}

@Test func tomlReaderRefusesMalformedDocumentsWithTheirPosition() {
    let cases: [(String, String)] = [
        ("[#x]\n", "line 1, column 2: expected a key"),
        ("a = 1\na = 2\n", "line 2, column 6: key 'a' is defined twice"),
        ("[t]\n[t]\n", "line 2, column 4: table 't' is defined twice"),
        ("a = \"open\n", "line 1, column 10: a string is not closed on its line"),
        ("a = [1, 2\n", "an array is not closed"),
        ("a = 007\n", "'007' is not a TOML value"),
        ("a = 1__0\n", "'1__0' is not a TOML value"),
        ("d = 1979-05-27\n", "dates and times are not supported"),
        ("a = 1 b = 2\n", "expected the end of the line"),
        ("a = { x = 1,\n y = 2 }\n", "expected a key"),
        ("a = \"\\q\"\n", "an unknown escape"),
        ("a = " + String(repeating: "[", count: 100) + "\n", "nested deeper than 64 levels"),
        ("a = 1\r", "a carriage return not followed by a line feed"),
    ]
    for (text, message) in cases {
        do {
            _ = try TOMLReader.parse(text)
            Issue.record("accepted: \(text)")
        } catch let e as TOMLReader.SyntaxError {
            #expect(e.description.contains(message), "\(text.debugDescription): \(e.description)")
        } catch {
            Issue.record("\(error)")
        }
    }
}
