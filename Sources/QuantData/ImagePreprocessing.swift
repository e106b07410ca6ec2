import QuantCore

/// Channel order of a preprocessed image.
public enum ColorFormat: String, Codable, Sendable, CaseIterable {
    case bgr, rgb, gray
}

/// How an image is resampled to the input's height and width (see `Resize` for the exact
/// definitions; they follow OpenCV's INTER_AREA / INTER_LINEAR / INTER_NEAREST conventions).
public enum ResizeMethod: String, Codable, Sendable, CaseIterable {
    case area, bilinear, nearest
}

/// Memory order of an image batch.
public enum ImageLayout: String, Codable, Sendable, CaseIterable {
    case nchw = "NCHW", nhwc = "NHWC"
}

/// The image pipeline of one input, applied in this order:
///
/// 1. decode to 0–255 values (16-bit PNGs are scaled by 255/65535), alpha dropped;
/// 2. convert to `colorFormat` (gray = 0.299 R + 0.587 G + 0.114 B, ITU-R BT.601, unrounded);
/// 3. resize: either straight to the target H×W, or — when `resizeShorterSide` is set or
///    `centerCrop` is on — so that the shorter side becomes `resizeShorterSide` (default
///    max(H, W)) with the longer side `floor(long * short' / short)` (torchvision's rule), then
///    crop H×W from the center starting at `floor((h' - H) / 2)`, `floor((w' - W) / 2)`;
/// 4. normalize each channel c: `y = (x * scale - mean[c]) / std[c]` (mean/std in the order of
///    `colorFormat`; empty mean = 0, empty std = 1; one value applies to every channel);
/// 5. lay out as NCHW or NHWC and convert to the input's element type (integers: round half
///    to even and saturate).
public struct ImagePreprocessing: Codable, Sendable, Equatable {
    public var colorFormat: ColorFormat
    public var resize: ResizeMethod
    /// Target [height, width]; nil takes them from the input's shape.
    public var size: [Int]?
    public var resizeShorterSide: Int?
    public var centerCrop: Bool
    public var scale: Double
    public var mean: [Double]
    public var std: [Double]
    /// nil infers the layout from the input shape (channels of 1 or 3 at axis 1: NCHW, at axis 3: NHWC).
    public var layout: ImageLayout?

    public init(colorFormat: ColorFormat = .bgr, resize: ResizeMethod = .bilinear, size: [Int]? = nil,
                resizeShorterSide: Int? = nil, centerCrop: Bool = false, scale: Double = 1,
                mean: [Double] = [], std: [Double] = [], layout: ImageLayout? = nil) {
        self.colorFormat = colorFormat
        self.resize = resize
        self.size = size
        self.resizeShorterSide = resizeShorterSide
        self.centerCrop = centerCrop
        self.scale = scale
        self.mean = mean
        self.std = std
        self.layout = layout
    }

    /// Caffe-style ImageNet: BGR, 0–255, mean [103.94, 116.78, 123.68], std 57, bilinear resize.
    public static let IMAGENET = ImagePreprocessing(
        colorFormat: .bgr, resize: .bilinear, scale: 1, mean: [103.94, 116.78, 123.68], std: [57, 57, 57])

    /// torchvision ImageNet: RGB, /255, resize shorter side to 256 (bilinear), center crop 224,
    /// mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225].
    public static let PT_IMAGENET = ImagePreprocessing(
        colorFormat: .rgb, resize: .bilinear, size: [224, 224], resizeShorterSide: 256, centerCrop: true,
        scale: 1.0 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// TensorFlow models trained on pixels in [-1, 1] (EfficientNet-Lite, MobileNet): RGB, resize
    /// shorter side to 256 (bilinear), center crop 224, (x − 127) / 128.
    public static let TF_LITE = ImagePreprocessing(
        colorFormat: .rgb, resize: .bilinear, size: [224, 224], resizeShorterSide: 256, centerCrop: true,
        scale: 1, mean: [127, 127, 127], std: [128, 128, 128])

    /// The names `preset(named:)` accepts, for help texts and error messages.
    public static let presetNames = ["IMAGENET", "PT_IMAGENET", "TF_LITE", "NONE"]

    /// Presets by name (`IMAGENET`, `PT_IMAGENET`, `TF_LITE`, `NONE`), case-insensitive.
    public static func preset(named name: String) -> ImagePreprocessing? {
        switch name.uppercased() {
        case "IMAGENET": IMAGENET
        case "PT_IMAGENET": PT_IMAGENET
        case "TF_LITE": TF_LITE
        case "NONE": ImagePreprocessing(colorFormat: .rgb)
        default: nil
        }
    }

    enum CodingKeys: String, CodingKey {
        case colorFormat, resize, size, resizeShorterSide, centerCrop, scale, mean, std, layout
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        colorFormat = try c.decodeIfPresent(ColorFormat.self, forKey: .colorFormat) ?? .bgr
        resize = try c.decodeIfPresent(ResizeMethod.self, forKey: .resize) ?? .bilinear
        size = try c.decodeIfPresent([Int].self, forKey: .size)
        resizeShorterSide = try c.decodeIfPresent(Int.self, forKey: .resizeShorterSide)
        centerCrop = try c.decodeIfPresent(Bool.self, forKey: .centerCrop) ?? false
        scale = try c.decodeIfPresent(Double.self, forKey: .scale) ?? 1
        mean = try c.decodeIfPresent([Double].self, forKey: .mean) ?? []
        std = try c.decodeIfPresent([Double].self, forKey: .std) ?? []
        layout = try c.decodeIfPresent(ImageLayout.self, forKey: .layout)
    }

    /// Checks values that do not depend on the model; `input` names the input in errors.
    func validate(input: String) throws {
        let channels = colorFormat == .gray ? 1 : 3
        for (field, values) in [("mean", mean), ("std", std)] where !(values.isEmpty || values.count == 1 || values.count == channels) {
            throw DataError.invalidConfig(input: input, "\(field) has \(values.count) values for \(channels) channel(s) (\(colorFormat.rawValue))",
                                          fix: "give one value per channel in \(colorFormat.rawValue) order, or a single value")
        }
        if std.contains(0) {
            throw DataError.invalidConfig(input: input, "std contains 0", fix: "use non-zero standard deviations")
        }
        if let size, size.count != 2 || size.contains(where: { $0 < 0 }) || size == [0, 0] {
            throw DataError.invalidConfig(input: input, "size \(size) is not [height, width]",
                                          fix: "give two positive numbers, or one and 0 for the side that follows the aspect ratio (e.g. [48, 0])")
        }
        if let size, size.contains(0), centerCrop || resizeShorterSide != nil {
            throw DataError.invalidConfig(input: input, "size \(size) follows the aspect ratio on one side, which a center crop cannot",
                                          fix: "give both sides of the crop, or drop centerCrop/resizeShorterSide")
        }
        if let s = resizeShorterSide, s < 1 {
            throw DataError.invalidConfig(input: input, "resizeShorterSide is \(s)", fix: "use a positive size")
        }
        if !scale.isFinite || scale == 0 {
            throw DataError.invalidConfig(input: input, "scale is \(scale)", fix: "use a finite non-zero scale, e.g. 1 or 1/255")
        }
    }

    func channelValue(_ values: [Double], _ c: Int, default d: Double) -> Double {
        values.isEmpty ? d : (values.count == 1 ? values[0] : values[c])
    }
}
