import Foundation
import QuantCore
import QuantKit
import Testing

/// The analysis API's own error: no batch at all (the CLI's data layer stops empty data sets
/// earlier with QK2103, so this is reached through the library).
@Test func analysisWithoutDataIsQK6002() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let model = root.appendingPathComponent("Tests/fixtures/fashion_cnn.onnx").path
    do {
        _ = try Analysis().run(floatModel: model, quantizedModel: model, total: nil, next: { nil })
        Issue.record("expected QK6002")
    } catch let e as QuantKitError {
        #expect(e.code == "QK6002")
        #expect(e.message.contains("no data"))
    }
}
