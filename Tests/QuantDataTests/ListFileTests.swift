import Foundation
import QuantCore
import Testing
@testable import QuantData

@Test func listFileCommentsBlankLinesAndRelativePaths() throws {
    let text = """
        # calibration images
        a/one.npy

        /abs/two.npy   # trailing comment
          three.npy\t
        """
    let rows = try ItemDiscovery.parse(text, listPath: "/data/lists/cal.txt", checkExists: false)
    #expect(rows == [["/data/lists/a/one.npy"], ["/abs/two.npy"], ["/data/lists/three.npy"]])
}

@Test func listFileSemicolonLinesHoldOneFilePerInput() throws {
    let rows = try ItemDiscovery.parse("ids/0.npy; mask/0.npy\nids/1.npy;mask/1.npy\n", listPath: "/d/l.txt", checkExists: false)
    #expect(rows == [["/d/ids/0.npy", "/d/mask/0.npy"], ["/d/ids/1.npy", "/d/mask/1.npy"]])
    let e = Fixtures.error { _ = try ItemDiscovery.parse("a;b\nc\n", listPath: "/d/l.txt", checkExists: false) }
    #expect(e?.code == "QK2113" && e!.message.contains("line 2"))
}

@Test func folderListingIsRecursiveSortedAndFiltered() throws {
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let t = Tensor(shape: [1], floats: [0])
    for name in ["b.npy", "a/z.npy", "a/b.npy", "B.npy", ".hidden/x.npy", "notes.md", "c.npy"] {
        try Fixtures.writeNpy(t, dir.appendingPathComponent(name))
    }
    let found = try ItemDiscovery.folder(dir.path, input: "x", fileType: nil).map { String($0.dropFirst(dir.standardizedFileURL.path.count + 1)) }
    #expect(found == ["B.npy", "a/b.npy", "a/z.npy", "b.npy", "c.npy"])
}

@Test func listFilesResolveRelativeToTheirFolderOnDisk() throws {
    let dir = try Fixtures.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let p = try Fixtures.writeNpy(Tensor(shape: [1], floats: [1]), dir.appendingPathComponent("data/x.npy"))
    let list = try Fixtures.write("data/x.npy\n\(p)\n", dir.appendingPathComponent("list.txt"))
    let rows = try ItemDiscovery.list(list)
    #expect(rows.count == 2 && rows.allSatisfy { FileManager.default.fileExists(atPath: $0[0]) })
}
