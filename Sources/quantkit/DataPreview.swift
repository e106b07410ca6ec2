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

<<<<<<< HEAD
    @OptionGroup var data: DataArguments
=======
    @Option(name: .customLong("input"), help: "name=PATH: a folder, list file, single file, or 'random'.")
    var inputs: [String] = []

    @Option(help: "A list whose lines hold one file per input separated by ';' (inputs without --input, in model order).")
    var list: String?

    @Option(help: "name=d0,d1,...: the input's shape (-1 symbolic).")
    var shape: [String] = []

    @Option(help: "name=TYPE: the element type fed to the input (float32, float16, uint8, int64, ...).")
    var dtype: [String] = []

    @Option(help: "name=TYPE: the file type (img, npy, raw, pb) when the extension does not say.")
    var fileType: [String] = []

    @Option(help: "name=TYPE: element type of raw files.")
    var rawDtype: [String] = []

    @Option(help: "name=file.py:function: a Python preprocessing function for the input.")
    var preprocess: [String] = []

    @Option(help: "Python interpreter for --preprocess functions.")
    var python = "python3"

    @Option(help: "Image preset: IMAGENET, PT_IMAGENET or NONE.")
    var preset: String?

    @Option(help: "Image color format: bgr, rgb, gray.")
    var color: ColorFormat?

    @Option(help: "Image resize method: area, bilinear, nearest.")
    var resize: ResizeMethod?

    @Option(help: "Image size HxW (default: from the input shape).")
    var size: String?

    @Option(help: "Resize the shorter side to this many pixels, then center crop.")
    var resizeShorter: Int?

    @Flag(help: "Center crop to the target size (after resizing the shorter side).")
    var centerCrop = false

    @Option(help: "Per-channel means, comma-separated, in the color format's order.")
    var mean: String?

    @Option(help: "Per-channel standard deviations, comma-separated.")
    var std: String?

    @Option(help: "Factor applied to 0-255 pixels before mean/std (e.g. 0.00392156862745098).")
    var scale: Double?

    @Option(help: "Image layout: NCHW or NHWC (default: from the input shape).")
    var layout: ImageLayout?

    @Option(help: "A DatasetConfig JSON file (the options above are then ignored, except --batch/--steps).")
    var config: String?

    @Option(help: "Items per batch.")
    var batch: Int?

    @Option(help: "Stop after this many batches.")
    var steps: Int?

    @Option(help: "Seed of random inputs.")
    var seed: UInt64 = 0

    @Option(name: .customLong("dim"), help: "SYMBOL=N: value of a symbolic dimension for random inputs (e.g. sequence_length=128).")
    var dims: [String] = []

    @Option(help: "Value of other symbolic non-batch dimensions for random inputs.")
    var defaultDim = 1

    @Option(help: "Number of items when every input is random.")
    var randomItems: Int?

    @Flag(help: "Fail on NaN/Inf instead of warning.")
    var failOnNonfinite = false
>>>>>>> data

    @Option(help: "Output folder for the .npy batches.")
    var out: String?

    @Flag(help: "Decode, preprocess and batch, but write nothing.")
    var dryRun = false

    func run() throws {
        try reportingErrors {
            guard dryRun || out != nil else {
                throw QuantKitError("QK7020", "data-preview needs --out DIR or --dry-run", fix: "pass --out DIR to write the batches, or --dry-run")
            }
            let (signatures, cfg) = try DataPreviewOptions(model: model, data: data).resolve()
            let dataset = try CalibrationDataset(signatures: signatures, config: cfg)
            try dataset.forEachBatch { b in
                var line = "batch \(b.index):"
                for sig in signatures {
                    let t = b.tensors[sig.name]!
                    line += " \(sig.name) \(t.dtype)\(t.shape)"
                    if let out, !dryRun {
                        let dir = URL(fileURLWithPath: out).appendingPathComponent(String(format: "batch_%05d", b.index))
                        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
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
