import ArgumentParser
import Foundation
import QuantData
import QuantKit

/// Calibration-data options shared by `data-preview`, `calibrate` and `quantize`; they decode
/// into the library's `DatasetConfig` through `DataPreviewOptions`.
struct DataArguments: ParsableArguments {
    @Option(name: .customLong("input"), help: "name=PATH: a folder, list file, single file, or 'random'.")
    var inputs: [String] = []

    @Option(help: "Read every input's batches from this pipe instead of files: a FIFO, /dev/fd/N or '-' (standard input) carrying per batch one (u32 name length, name, .npy frame) record per input and a 0 length; what the Python package sends (docs/PYTHON.md). Read once: later passes (analysis, GPTQ) see its first items.")
    var inputStream: String?

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

    @Option(help: "Image preset: IMAGENET (Caffe BGR), PT_IMAGENET (torchvision), TF_LITE ([-1, 1] RGB) or NONE.")
    var preset: String?

    @Option(help: "Image color format: bgr, rgb, gray.")
    var color: ColorFormat?

    @Option(help: "Image resize method: area, bilinear, nearest.")
    var resize: ResizeMethod?

    @Option(help: "Image size HxW (default: from the input shape); 0 for one side follows the image's aspect ratio (--size 48x0: text lines 48 high at their natural widths).")
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

    @Option(name: .customLong("data-config"), help: "A DatasetConfig JSON file (the options above are then ignored, except --batch/--steps).")
    var config: String?

    @Option(help: "Items per batch (default 1).")
    var batch: Int?

    @Option(help: "Stop after this many batches (default: all items; XQuant configurations: calibration_step 100).")
    var steps: Int?

    @Option(help: "Seed of random inputs (default 0).")
    var seed: UInt64?

    @Option(name: .customLong("dim"), help: "SYMBOL=N: value of a symbolic dimension for random inputs (e.g. sequence_length=128).")
    var dims: [String] = []

    @Option(help: "Value of other symbolic non-batch dimensions for random inputs.")
    var defaultDim = 1

    @Option(help: "Number of items when every input is random.")
    var randomItems: Int?

    @Flag(help: "Fail on NaN/Inf instead of warning.")
    var failOnNonfinite = false

    @Option(help: "Largest image (width x height pixels) a header may declare before decoding (default 100000000).")
    var maxImagePixels: Int?

    @Option(help: "Largest item in bytes as fed to the model: a random item, a resized image, a raw row (default 2147483648).")
    var maxItemBytes: Int?

    /// The resource limits given on the command line, over the configuration's.
    func applyLimits(_ cfg: inout DatasetConfig) {
        if let v = maxImagePixels { cfg.limits.maxImagePixels = v }
        if let v = maxItemBytes { cfg.limits.maxItemBytes = v }
    }

    /// True when an option naming data sources or their format was given (then these options
    /// replace a configuration file's data).
    var describesSources: Bool {
        !inputs.isEmpty || inputStream != nil || list != nil || config != nil || !shape.isEmpty || !dtype.isEmpty || !fileType.isEmpty || !rawDtype.isEmpty
            || !preprocess.isEmpty || preset != nil || color != nil || resize != nil || size != nil || resizeShorter != nil || centerCrop
            || mean != nil || std != nil || scale != nil || layout != nil || !dims.isEmpty || randomItems != nil
    }
}
