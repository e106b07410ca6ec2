import QuantCore

/// Runs `ImagePreprocessing` on one decoded image and returns a float32 item tensor
/// `[1, C, H, W]` (NCHW) or `[1, H, W, C]` (NHWC). See `ImagePreprocessing` for the steps.
public enum ImagePipeline {
    /// Geometry of an image input: output size, channels and layout.
    public struct Target: Equatable, Sendable {
        public var height: Int
        public var width: Int
        public var layout: ImageLayout
        public init(height: Int, width: Int, layout: ImageLayout) {
            self.height = height
            self.width = width
            self.layout = layout
        }
    }

    /// Reads H, W and the layout from a 4-D input shape (`nil` dims are symbolic) and the
    /// preprocessing's `size`/`layout`. A size of 0 (from `size`, or the one symbolic side of a
    /// shape like [N, 3, 48, ?]) follows the image's aspect ratio: a text line 48 high keeps its
    /// natural width. Throws QK2111 when both sides are symbolic and no size is set.
    public static func target(for sig: InputSignature, prep: ImagePreprocessing) throws -> Target {
        let shape = sig.shape ?? [nil, nil, nil, nil]
        guard shape.count == 4 else {
            throw DataError.invalidConfig(input: sig.name, "image files need a 4-D input but the input has shape \(sig.shapeText)",
                                          fix: "use .npy/raw files for this input, or set its shape")
        }
        let channels = prep.colorFormat == .gray ? 1 : 3
        let layout = prep.layout ?? (shape[1] == channels || (shape[1] == nil && shape[3] != channels) ? .nchw : .nhwc)
        let c = layout == .nchw ? shape[1] : shape[3]
        if let c, c != channels {
            throw DataError.invalidConfig(input: sig.name, "the input has \(c) channel(s) but color format \(prep.colorFormat.rawValue) gives \(channels)",
                                          fix: "set the color format (gray for 1 channel, rgb/bgr for 3) or the layout")
        }
        let h = prep.size?[0] ?? (layout == .nchw ? shape[2] : shape[1])
        let w = prep.size?[1] ?? (layout == .nchw ? shape[3] : shape[2])
        guard h != nil || w != nil else {
            throw DataError.invalidConfig(input: sig.name, "the input's height and width are symbolic (\(sig.shapeText))",
                                          fix: "set the image size [height, width] in the input's preprocessing (--size HxW; 0 for a side follows "
                                              + "the aspect ratio, e.g. --size 48x0 for text lines 48 high)")
        }
        return Target(height: h ?? 0, width: w ?? 0, layout: layout)
    }

    /// The target with a 0 side resolved from an image's aspect ratio (at least 1 pixel).
    public static func resolved(_ target: Target, imageHeight: Int, imageWidth: Int) -> Target {
        var t = target
        if t.width == 0 { t.width = max(1, Int((Double(imageWidth) * Double(t.height) / Double(max(imageHeight, 1))).rounded())) }
        if t.height == 0 { t.height = max(1, Int((Double(imageHeight) * Double(t.width) / Double(max(imageWidth, 1))).rounded())) }
        return t
    }

    /// A resize that stretches one side more than this against the other, or a center crop
    /// that keeps less than its inverse of the longer side, gets QK2116.
    public static let maxDistortion = 3.0

    /// What fitting an image of this size to `target` does to it when that is far from what a
    /// model of natural-shape crops expects (nil when it is not): a 40x600 text line squeezed
    /// into 224x224 (stretched 15x), or center-cropped to 224 of its 3840 resized columns.
    public static func shapeWarning(imageHeight h: Int, imageWidth w: Int, prep: ImagePreprocessing, target: Target) -> String? {
        guard h > 0, w > 0, target.height > 0, target.width > 0 else { return nil }
        if prep.centerCrop || prep.resizeShorterSide != nil {
            let short = Double(prep.resizeShorterSide ?? max(target.height, target.width))
            let (rh, rw) = h <= w ? (short, Double(w) * short / Double(h)) : (Double(h) * short / Double(w), short)
            let kept = min(Double(target.height) / rh, Double(target.width) / rw)
            guard kept < 1 / maxDistortion else { return nil }
            return "is center-cropped to \(target.height)x\(target.width) of \(Int(rh))x\(Int(rw)) after resizing: \(Int((kept * 100).rounded()))% of its longer side is kept"
        }
        let d = distortion(imageHeight: h, imageWidth: w, target: target)
        guard d > maxDistortion else { return nil }
        return "is resized to \(target.height)x\(target.width), stretching one side \(String(format: "%.1f", d))x against the other"
    }

    /// How much resizing `image` straight to `target` stretches one side against the other
    /// (1: the aspect ratio is kept; 6: a 600x50 text line squeezed into 224x224).
    public static func distortion(imageHeight: Int, imageWidth: Int, target: Target) -> Double {
        guard imageHeight > 0, imageWidth > 0, target.height > 0, target.width > 0 else { return 1 }
        let r = (Double(target.width) / Double(imageWidth)) / (Double(target.height) / Double(imageHeight))
        return max(r, 1 / r)
    }

    /// Converts, resizes, crops and normalizes `image` into a float32 item tensor.
    public static func run(_ image: DecodedImage, prep: ImagePreprocessing, target given: Target, input: String, file: String) throws -> Tensor {
        let target = resolved(given, imageHeight: image.height, imageWidth: image.width)
        let colored = convertColor(image, to: prep.colorFormat)
        let c = colored.channels
        let (H, W) = (target.height, target.width)
        var rh = H, rw = W, top = 0, left = 0
        if prep.centerCrop || prep.resizeShorterSide != nil {
            let short = prep.resizeShorterSide ?? max(H, W)
            if colored.height <= colored.width {
                rh = short
                rw = colored.width * short / colored.height
            } else {
                rw = short
                rh = colored.height * short / colored.width
            }
            guard rh >= H, rw >= W else {
                throw DataError.invalidConfig(input: input, "image '\(file)' resized to \(rh)x\(rw) is smaller than the \(H)x\(W) center crop",
                                              fix: "raise resizeShorterSide to at least max(height, width)")
            }
            top = (rh - H) / 2
            left = (rw - W) / 2
        }
        let rows = Resize.taps(inSize: colored.height, outSize: rh, method: prep.resize)
        let cols = Resize.taps(inSize: colored.width, outSize: rw, method: prep.resize)
        let px = Resize.apply(colored.pixels, h: colored.height, w: colored.width, c: c,
                              rows: rows[top..<(top + H)], cols: cols[left..<(left + W)])
        let shape = target.layout == .nchw ? [1, c, H, W] : [1, H, W, c]
        let t = Tensor(dtype: .float, shape: shape)
        let mul = (0..<c).map { Float(prep.scale / prep.channelValue(prep.std, $0, default: 1)) }
        let add = (0..<c).map { Float(-prep.channelValue(prep.mean, $0, default: 0) / prep.channelValue(prep.std, $0, default: 1)) }
        t.withUnsafeMutableBufferPointer(as: Float.self) { o in
            for y in 0..<H {
                for x in 0..<W {
                    for ch in 0..<c {
                        let v = px[(y * W + x) * c + ch] * mul[ch] + add[ch]
                        o[target.layout == .nchw ? (ch * H + y) * W + x : (y * W + x) * c + ch] = v
                    }
                }
            }
        }
        return t
    }

    /// Reorders or mixes channels: gray = 0.299 R + 0.587 G + 0.114 B (BT.601); gray to
    /// color repeats the sample.
    public static func convertColor(_ image: DecodedImage, to format: ColorFormat) -> DecodedImage {
        let n = image.width * image.height
        var out: [Float]
        switch (image.channels, format) {
        case (1, .gray): return image
        case (1, _):
            out = [Float](repeating: 0, count: n * 3)
            for i in 0..<n { let v = image.pixels[i]; out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v }
        case (_, .gray):
            out = [Float](repeating: 0, count: n)
            for i in 0..<n {
                let r = Double(image.pixels[3 * i]), g = Double(image.pixels[3 * i + 1]), b = Double(image.pixels[3 * i + 2])
                out[i] = Float(0.299 * r + 0.587 * g + 0.114 * b)
            }
        case (_, .rgb): return image
        case (_, .bgr):
            out = image.pixels
            for i in 0..<n { out.swapAt(3 * i, 3 * i + 2) }
        }
        return DecodedImage(width: image.width, height: image.height, channels: format == .gray ? 1 : 3, pixels: out)
    }
}
