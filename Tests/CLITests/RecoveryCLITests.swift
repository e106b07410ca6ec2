import Foundation
import QuantKit
import Testing

/// Cross-layer equalization and SmoothQuant through the CLI, on EfficientNet-Lite0.
@Suite(.enabled(if: Fixture.available, "needs .cache/models and .cache/data (scripts/fetch-models.sh)"))
struct RecoveryCLITests {
    /// --equalize quantizes the equalized model, and the analysis compares it with the float
    /// model equalized the same way (its first tensors are the equalized ones: compared with the
    /// original float model they would be off by the per-channel factors).
    @Test func equalizedModelIsAnalyzedAgainstTheEqualizedFloatModel() throws {
        let dir = try CLI.temporaryDirectory()
        let list = try Fixture.list(2, in: dir)
        let out = dir.appendingPathComponent("eq.q.onnx").path
        let r = try CLI.run(["quantize", Fixture.model, "--input", "input=\(list)", "--equalize", "--no-per-channel-weights", "-o", out, "--target", "none", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("equalized  ") && r.stdout.contains("Relu6/Clip bounds made per channel"), "\(r.stdout)")
        let record = try JSONDecoder().decode(ParameterRecord.self, from: Data(contentsOf: URL(fileURLWithPath: dir.appendingPathComponent("eq.qparams.json").path)))
        #expect(record.transforms?.equalize == true && (record.applied?.equalization?.pairs.count ?? 0) > 20)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.appendingPathComponent("eq.report.json").path))) as! [String: Any]
        let first = (report["layers"] as! [[String: Any]])[0]
        #expect((first["tensor"] as! String).hasSuffix("_relu"))
        #expect(((first["graphwise"] as! [String: Any])["cosine"] as! Double) > 0.999)
    }

    /// A statistics file records the transforms it was calibrated under; quantizing with other
    /// transforms is QK4006, with the same ones it works.
    @Test func statisticsMustMatchTheTransforms() throws {
        let dir = try CLI.temporaryDirectory()
        let list = try Fixture.list(1, in: dir)
        let plain = dir.appendingPathComponent("plain.json").path, equalized = dir.appendingPathComponent("eq.json").path
        #expect(try CLI.run(["calibrate", Fixture.model, "--input", "input=\(list)", "--stats-out", plain, "--quiet"]).status == 0)
        #expect(try CLI.run(["calibrate", Fixture.model, "--input", "input=\(list)", "--stats-out", equalized, "--equalize", "--quiet"]).status == 0)
        let out = dir.appendingPathComponent("o.onnx").path
        expectError(try CLI.run(["quantize", Fixture.model, "--stats", plain, "--equalize", "-o", out, "--bias-correction", "off"]), "QK4006",
                    "was calibrated with float transforms 'none' but this run applies 'cross-layer equalization'")
        expectError(try CLI.run(["quantize", Fixture.model, "--stats", equalized, "-o", out, "--bias-correction", "off"]), "QK4006",
                    "was calibrated with float transforms 'cross-layer equalization' but this run applies 'none'")
        let ok = try CLI.run(["quantize", Fixture.model, "--stats", equalized, "--equalize", "-o", out, "--bias-correction", "off", "--quiet"])
        #expect(ok.status == 0, "\(ok.stderr)")
        expectError(try CLI.run(["calibrate", "--merge", plain, equalized, "--stats-out", dir.appendingPathComponent("m.json").path]), "QK4004",
                    "statistics of differently transformed models cannot merge")
        expectError(try CLI.run(["quantize", Fixture.model, "--input", "input=\(list)", "--smoothquant", "1.5", "-o", out]), "QK7004", "--smoothquant is '1.5'")
        expectError(try CLI.run(["calibrate", Fixture.model, "--input", "input=\(list)", "--smoothquant", "auto", "--stats-out", plain]), "QK7005",
                    "calibrate --smoothquant = auto is not implemented")
    }
}

/// AdaRound through the CLI on the committed Fashion CNN fixture with random inputs: 4-bit
/// weights rounded adaptively, the record and the report say per layer what changed, and the
/// layer error is never above round-to-nearest's.
@Test func adaRoundRoundsEveryWeightAndReportsIt() throws {
    let dir = try CLI.temporaryDirectory()
    let model = CLI.root.appendingPathComponent("Tests/fixtures/fashion_cnn.onnx").path
    let out = dir.appendingPathComponent("f.q.onnx").path
    let r = try CLI.run(["quantize", model, "--input", "image=random", "--random-items", "16", "--weight-bits", "4", "--finetune-level", "2",
                         "-o", out, "--target", "none", "--quiet"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("rounded    4 weights adaptively (AdaRound)"), "\(r.stdout)")
    let record = try JSONDecoder().decode(ParameterRecord.self, from: Data(contentsOf: URL(fileURLWithPath: dir.appendingPathComponent("f.qparams.json").path)))
    let rounding = try #require(record.rounding)
    #expect(rounding.count == 4 && rounding.values.allSatisfy { $0.errorAfter <= $0.errorNearest } && rounding.values.contains { $0.flips > 0 })
    // 4-bit symmetric weights in int8 tensors: each channel's scale puts its largest weight at ±7.
    let weights = record.tensors.values.filter { $0.role == .weight }
    #expect(weights.count == 4 && weights.allSatisfy { $0.dtype == "int8" && $0.method == "minmax+adaround" })
    #expect(weights.allSatisfy { w in zip(w.threshold, w.scale).allSatisfy { abs($0 / $1 - 7) < 1e-3 } })
    let report = try String(contentsOfFile: dir.appendingPathComponent("f.report.md").path, encoding: .utf8)
    #expect(report.contains("## AdaRound") && report.contains("| node | flipped | weights | error nearest | error AdaRound |"))
    expectError(try CLI.run(["quantize", model, "--input", "image=random", "--weight-bits", "9", "-o", out]), "QK7004", "--weight-bits is 9")
}
