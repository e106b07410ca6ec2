import Foundation
import QuantKit
import Testing

/// End-to-end tests of `quantkit quantize -c FILE` on the real EfficientNet-Lite0 model with
/// the foolbox ImageNet photos (both fetched into .cache by scripts/fetch-models.sh).
enum Fixture {
    static let model = CLI.root.appendingPathComponent(".cache/models/efficientnet_lite0.onnx").path
    static let photos = CLI.root.appendingPathComponent(".cache/data/foolbox")
    static var available: Bool { FileManager.default.fileExists(atPath: model) && FileManager.default.fileExists(atPath: photos.path) }

    /// A list file of the first `n` ImageNet photos in `dir`.
    static func list(_ n: Int, in dir: URL) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: photos.path).filter { $0.hasPrefix("imagenet_") }.sorted().prefix(n)
        let path = dir.appendingPathComponent("calib.txt").path
        try names.map { photos.appendingPathComponent($0).path }.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func write(_ text: String, _ name: String, in dir: URL) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// An XQuant config for EfficientNet-Lite0 over `list`; `extra` is spliced into input_parametres[0].
    static func xquant(list: String, model: String? = Fixture.model, inputs: String? = nil, step: Int = 2, quantization: String = "{}") -> String {
        let input = #"{"input_name": "input", "input_shape": [1, 3, 224, 224], "preprocess_file": "PT_IMAGENET", "data_list_path": "\#(list)"}"#
        return """
            {"model_parameters": {\(model.map { #""onnx_model": "\#($0)""# } ?? "")},
             "calibration_parameters": {"calibration_step": \(step), "calibration_type": "minmax", "input_parametres": [\(inputs ?? input)]},
             "quantization_parameters": \(quantization)}
            """
    }
}

/// Checks exit code 2 and that stderr starts with `error: CODE` and holds `text`.
func expectError(_ r: CLI.Result, _ code: String, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!r.crashed, sourceLocation: sourceLocation)
    #expect(r.status == 2, "\(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.hasPrefix("error: \(code) "), "\(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(text), "\(r.stderr)", sourceLocation: sourceLocation)
}

@Suite(.enabled(if: Fixture.available, "needs .cache/models and .cache/data (scripts/fetch-models.sh)"))
struct ConfigCLITests {
    @Test func xquantConfigRunsLikeXQuant() throws {
        let dir = try CLI.temporaryDirectory()
        let cfg = try Fixture.write(Fixture.xquant(list: try Fixture.list(2, in: dir), model: nil), "cfg.json", in: dir)
        let out = dir.appendingPathComponent("out.onnx").path
        let r = try CLI.run(["quantize", "-c", cfg, "-i", Fixture.model, "-o", out, "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("calibrated 2 items in 2 batches"))
        #expect(r.stdout.contains("model      \(out)"))
        #expect(FileManager.default.fileExists(atPath: out))
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.qparams.json").path))
    }

    @Test func flagsOverrideTheFile() throws {
        let dir = try CLI.temporaryDirectory()
        let cfg = try Fixture.write(Fixture.xquant(list: try Fixture.list(2, in: dir), quantization: #"{"truncate_var_names": ["a"]}"#), "cfg.json", in: dir)
        let r = try CLI.run(["quantize", "-c", cfg, "--method", "percentile", "--percentile", "0.999", "--steps", "7", "--bins", "4096",
                             "--truncate", "b", "--activations", "s8", "--no-per-channel-weights", "-o", "x.onnx", "--print-config"])
        #expect(r.status == 0, "\(r.stderr)")
        let c = try JSONDecoder().decode(QuantizerConfiguration.self, from: Data(r.stdout.utf8))
        #expect(c.scheme.method == .percentile(0.999))
        #expect(c.data?.steps == 7 && c.observer.bins == 4096 && c.control.truncateAfter == ["b"] && c.output == "x.onnx")
        #expect(c.scheme.activation == QuantScheme.s8s8.activation && !c.scheme.perChannelWeights)
        #expect(c.model == Fixture.model)
        let file = try CLI.run(["quantize", "-c", cfg, "--print-config"])
        let f = try JSONDecoder().decode(QuantizerConfiguration.self, from: Data(file.stdout.utf8))
        #expect(f.scheme.method == .minMax && f.data?.steps == 2 && f.control.truncateAfter == ["a"] && f.observer.bins == 2048)
    }

    @Test func icraftTomlRuns() throws {
        let dir = try CLI.temporaryDirectory()
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Fixture.photos.appendingPathComponent("imagenet_00_243.jpg"), to: data.appendingPathComponent("a.jpg"))
        let out = dir.appendingPathComponent("m.q.onnx").path
        let cfg = try Fixture.write("""
            [quantize]
            model = "\(Fixture.model)"
            output = "\(out)"
            forward_dir = "\(data.path)"
            saturation = "null"
            per = "channel"
            qdtype = "uint8"
            preset = "PT_IMAGENET"
            """, "cfg.toml", in: dir)
        let r = try CLI.run(["quantize", "-c", cfg, "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("calibrated 1 items in 1 batches"))
        #expect(FileManager.default.fileExists(atPath: out))
    }

    @Test func progressAsJSONLinesHasRateAndETA() throws {
        let dir = try CLI.temporaryDirectory()
        let cfg = try Fixture.write(Fixture.xquant(list: try Fixture.list(2, in: dir)), "cfg.json", in: dir)
        let r = try CLI.run(["quantize", "-c", cfg, "-o", dir.appendingPathComponent("o.onnx").path, "--log-json"])
        #expect(r.status == 0, "\(r.stderr)")
        // Calibration's two batches, then the analysis stage's (on by default) lines.
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("{") && $0.contains("\"calibrate\"") }
        #expect(lines.count == 2)
        #expect(r.stderr.split(separator: "\n").contains { $0.hasPrefix("{") && $0.contains("\"analyze\"") })
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(first?["stage"] as? String == "calibrate" && first?["done"] as? Int == 1 && first?["total"] as? Int == 2)
        #expect(first?["rate"] is Double && first?["eta_s"] is Double)
        let quiet = try CLI.run(["quantize", "-c", cfg, "-o", dir.appendingPathComponent("q.onnx").path, "--quiet"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "\(quiet.stderr)")
    }

    @Test func inputCountDifferingFromTheModelIsQK2101() throws {
        let dir = try CLI.temporaryDirectory()
        let list = try Fixture.list(1, in: dir)
        let two = #"{"data_list_path": "\#(list)"}, {"input_name": "extra", "data_list_path": "\#(list)"}"#
        let cfg = try Fixture.write(Fixture.xquant(list: list, inputs: two), "cfg.json", in: dir)
        expectError(try CLI.run(["quantize", "-c", cfg, "-o", dir.appendingPathComponent("o.onnx").path]), "QK2102",
                    "calibration input 'extra' is not an input of the model ('input')")
        let unnamed = #"{"data_list_path": "\#(list)"}, {"data_list_path": "\#(list)"}"#
        let cfg2 = try Fixture.write(Fixture.xquant(list: list, inputs: unnamed), "cfg2.json", in: dir)
        expectError(try CLI.run(["quantize", "-c", cfg2, "-o", dir.appendingPathComponent("o.onnx").path]), "QK2101",
                    "the model has 1 input(s) ('input') but the calibration data configures 2")
    }

    @Test func zeroItemsIsQK2103() throws {
        let dir = try CLI.temporaryDirectory()
        let empty = try Fixture.write("# nothing\n", "empty.txt", in: dir)
        let cfg = try Fixture.write(Fixture.xquant(list: empty), "cfg.json", in: dir)
        expectError(try CLI.run(["quantize", "-c", cfg, "-o", dir.appendingPathComponent("o.onnx").path]), "QK2103",
                    "calibration input 'input' finds 0 items in '\(empty)'")
    }

    @Test func shapeMismatchNamesTheDimension() throws {
        let dir = try CLI.temporaryDirectory()
        // A float32 .npy of shape [1, 3, 100, 100] against the model's [batch, 3, 224, 224].
        var npy = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 100, 100), }"
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        npy.append(contentsOf: [UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
        npy.append(Data(header.utf8))
        npy.append(Data(count: 4 * 3 * 100 * 100))
        let file = dir.appendingPathComponent("x.npy")
        try npy.write(to: file)
        let list = try Fixture.write(file.path, "list.txt", in: dir)
        let input = #"{"file_type": "npy", "data_list_path": "\#(list)"}"#
        let cfg = try Fixture.write(Fixture.xquant(list: list, inputs: input), "cfg.json", in: dir)
        expectError(try CLI.run(["quantize", "-c", cfg, "-o", dir.appendingPathComponent("o.onnx").path]), "QK2104",
                    "input 'input' expects shape [batch,3,224,224] but calibration file '\(file.path)' has [1,3,100,100] (dimension 2 differs)")
    }

    @Test func truncationErrorsNameTheTensor() throws {
        let dir = try CLI.temporaryDirectory()
        let stats = try Fixture.write("input,-2,2\n", "ranges.csv", in: dir)
        let o = dir.appendingPathComponent("o.onnx").path
        expectError(try CLI.run(["quantize", Fixture.model, "--stats", stats, "-o", o, "--truncate", "no_such_tensor"]), "QK5001",
                    "truncate tensor 'no_such_tensor' is not in the model")
        // The graph output is produced but read by no node: nothing lies after it.
        expectError(try CLI.run(["quantize", Fixture.model, "--stats", stats, "-o", o, "--truncate", "output"]), "QK5002",
                    "truncate tensor 'output' does not cut the graph in two")
        let dir2 = try CLI.temporaryDirectory()
        let cfg = try Fixture.write(Fixture.xquant(list: try Fixture.list(1, in: dir2), quantization: #"{"custom_setting": [{"input_names": ["input"], "output_names": ["nope"], "bits": 16}]}"#), "c.json", in: dir2)
        expectError(try CLI.run(["quantize", "-c", cfg, "-o", o, "--quiet"]), "QK5001", "custom_setting tensor 'nope' is not in the model")
        #expect(!FileManager.default.fileExists(atPath: o))
    }

    @Test func configurationErrorsExitWith2() throws {
        let dir = try CLI.temporaryDirectory()
        let list = try Fixture.list(1, in: dir)
        let typo = try Fixture.write(#"{"model_parameters": {"onnx_modle": "m.onnx"}}"#, "typo.json", in: dir)
        expectError(try CLI.run(["quantize", "-c", typo]), "QK7003", "unknown key 'model_parameters.onnx_modle'; did you mean 'onnx_model'?")
        let method = try Fixture.write(Fixture.xquant(list: list), "m.json", in: dir)
        expectError(try CLI.run(["quantize", "-c", method, "--method", "best"]), "QK7002", "--method 'best' is not a known calibration type; use one of: default, minmax")
        let level = try Fixture.write(Fixture.xquant(list: list, quantization: #"{"precision_level": 3}"#), "l.json", in: dir)
        expectError(try CLI.run(["quantize", "-c", level]), "QK7005", "quantization_parameters.precision_level = 3 is not implemented")
        let smooth = try Fixture.write("[quantize]\nsmooth_alpha = 2\n", "s.toml", in: dir)
        expectError(try CLI.run(["quantize", "-c", smooth]), "QK7004", "quantize.smooth_alpha is 2.0")
        expectError(try CLI.run(["quantize", "-c", dir.appendingPathComponent("missing.json").path]), "QK7006", "the file does not exist")
        expectError(try CLI.run(["quantize", "-c", method, "--subgraph", "a:b"]), "QK7004", "--subgraph is 'a:b'")
        let noData = try Fixture.write("[quantize]\n", "n.toml", in: dir)
        expectError(try CLI.run(["quantize", "-c", noData, "-i", Fixture.model]), "QK7007", "the configuration gives no calibration data")
        expectError(try CLI.run(["quantize", "a.onnx", "-i", "b.onnx"]), "QK7008", "the model is given twice")
        expectError(try CLI.run(["quantize", "-c", method, "-o", Fixture.model]), "QK7001", "is the input model")
    }

    @Test func unwritableOutputFolderIsQK1010() throws {
        let dir = try CLI.temporaryDirectory()
        let blocker = try Fixture.write("not a folder", "file", in: dir)
        let stats = try Fixture.write("input,-2,2\n", "ranges.csv", in: dir)
        expectError(try CLI.run(["quantize", Fixture.model, "--stats", stats, "-o", blocker + "/sub/o.onnx"]), "QK1010", "cannot create the output folder")
    }

    @Test func usageErrorsExitWith64() throws {
        let r = try CLI.run(["quantize", "--no-such-flag"])
        #expect(r.status == 64 && !r.crashed)
        let help = try CLI.run(["quantize", "--help"])
        #expect(help.status == 0)
        for text in ["-c, --config", "-i, --model", "kl_v2", "default: default", "default 0.9999", "default 2048", "--subgraph"] {
            #expect(help.stdout.contains(text), "\(text)")
        }
    }

    @Test func otherCommandsReportTheirCodes() throws {
        expectError(try CLI.run(["calibrate", "--stats-out", "/tmp/never.json"]), "QK7022", "calibrate needs a model (or --merge FILES)")
        expectError(try CLI.run(["data-preview", Fixture.model, "--input", "input=random"]), "QK7020", "data-preview needs --out DIR or --dry-run")
    }
}
