import ArgumentParser
import Foundation
import QuantData
import QuantKit

struct DataPreview: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data-preview",
        abstract: "Stream calibration batches as QuantKit would feed them and write each batch as .npy files.",
        discussion: """
            Each --input maps a model input to a folder, a list file (.txt/.lst/.list), a single file, or 'random'. \
            Batches are written to OUT/batch_NNNNN/<input>.npy; --dry-run only decodes, preprocesses and batches. \
            Without a model, give every input's --shape (and --dtype unless float32).
            """)

    @Argument(help: "The .onnx model whose inputs are fed (optional when --shape is given for every input).")
    var model: String?

    @OptionGroup var data: DataArguments

    @Option(name: .customLong("config"), help: "Same as --data-config.")
    var dataConfig: String?

    @Option(help: "Output folder for the .npy batches.")
    var out: String?

    @Flag(help: "Decode, preprocess and batch, but write nothing.")
    var dryRun = false

    func run() throws {
        try reportingErrors {
            guard dryRun || out != nil else {
                throw QuantKitError("QK7020", "data-preview needs --out DIR or --dry-run", fix: "pass --out DIR to write the batches, or --dry-run")
            }
            var data = data
            if let dataConfig { data.config = dataConfig }
            let (signatures, cfg) = try DataPreviewOptions(model: model, data: data).resolve()
            let dataset = try CalibrationDataset(signatures: signatures, config: cfg)
            try dataset.forEachBatch { b in
                var line = "batch \(b.index):"
                for sig in signatures {
                    let t = b.tensors[sig.name]!
                    line += " \(sig.name) \(t.dtype)\(t.shape)"
                    if let out, !dryRun {
                        let dir = URL(fileURLWithPath: out).appendingPathComponent(String(format: "batch_%05d", b.index))
                        try AtomicFile.makeDirectory(dir.path)
                        guard let data = Npy.encode(t) else { throw QuantKitError("QK7020", "cannot write \(t.dtype) as .npy", fix: "") }
                        try AtomicFile.write(data, to: dir.appendingPathComponent(DataPreviewOptions.fileName(sig.name)).path)
                    }
                }
                print(line)
            }
            let report = dataset.report
            print("\(report.batches) batch(es), \(report.items) item(s)")
            for w in report.warnings { FileHandle.standardError.write(Data("warning: \(w.code) \(w.message)\n".utf8)) }
        }
    }
}

extension ColorFormat: ExpressibleByArgument {}
extension ResizeMethod: ExpressibleByArgument {}
extension ImageLayout: ExpressibleByArgument {}
