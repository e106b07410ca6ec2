import Foundation
import QuantCore
import QuantIR
import QuantONNX

/// A user preprocessing closure: the paths of one batch and the input's configuration in, one
/// tensor with the batch first out.
public typealias CustomPreprocess = @Sendable (_ paths: [String], _ input: InputConfig) throws -> Tensor

/// Everything needed to produce one input's tensors: resolved signature, items, readers.
struct InputPlan: @unchecked Sendable {
    let index: Int
    let config: InputConfig
    /// The model's signature with the configuration's shape/dtype overrides applied.
    let signature: InputSignature
    /// Paths of the items (empty for random inputs).
    let items: [String]
    let python: PythonPreprocess?
    let custom: CustomPreprocess?
    let seed: UInt64
    let symbolicDims: [String: Int]
    let symbolicDimDefault: Int
    let limits: DataLimits
    /// Records a data warning (the dataset's report; the first of each code per input is kept).
    var warn: (@Sendable (DataWarning) -> Void)? = nil

    var isRandom: Bool { config.source == .random }
    /// Made by the data set, not read: random data or an empty cache.
    var isGenerated: Bool { isRandom || config.source == .emptyCache }

    /// The empty cache tensor of a batch of `items`: symbolic non-batch dimensions 0.
    func emptyCache(items: Int) -> Tensor {
        let dims = (signature.shape ?? [nil]).enumerated().map { i, d in i == 0 ? items : d ?? 0 }
        return Tensor(dtype: target, shape: dims)
    }
    var target: DType { signature.dtype }
    var prep: ImagePreprocessing { config.image ?? ImagePreprocessing() }

    /// Reads one item file into a tensor with a leading batch dimension, checked against the
    /// signature and converted to the input's type.
    func read(_ path: String) throws -> Tensor {
        let name = config.name
        guard FileManager.default.fileExists(atPath: path) else {
            throw DataError.unreadable(input: name, file: path, reason: "the file does not exist")
        }
        guard let type = config.fileType ?? FileType.infer(path: path) else {
            throw DataError.unsupportedFile(input: name, file: path, detail: "unknown extension (expected .jpg .jpeg .png .bmp .npy .pb .raw .bin)")
        }
        var t: Tensor
        var computed = false
        switch type {
        case .image:
            let given = try ImagePipeline.target(for: signature, prep: prep)
            let channels = prep.colorFormat == .gray ? 1 : 3
            let followsRatio = given.height == 0 || given.width == 0
            if !followsRatio {
                try limits.checkItem(.float, [1, channels, given.height, given.width], input: name, file: path, what: "the image as fed to the model,")
            }
            let img = try ImageDecoder.decode(path: path, input: name, maxPixels: limits.maxImagePixels)
            let target = ImagePipeline.resolved(given, imageHeight: img.height, imageWidth: img.width)
            if followsRatio {
                try limits.checkItem(.float, [1, channels, target.height, target.width], input: name, file: path, what: "the image as fed to the model,")
            } else if let w = ImagePipeline.shapeWarning(imageHeight: img.height, imageWidth: img.width, prep: prep, target: target) {
                warn?(DataWarning(code: "QK2116", input: name, message: "image '\(path)' (\(img.height)x\(img.width)) \(w); if the model reads text lines "
                    + "or other crops of their own shape, give the size with 0 for the side that follows the aspect ratio, at the height the model was trained for (e.g. --size 48x0 for PP-OCR)"))
            }
            t = try ImagePipeline.run(img, prep: prep, target: target, input: name, file: path)
            computed = true
        case .npy:
            t = try Npy.read(path: path, input: name)
        case .pb:
            do { t = try TensorProtoCodec.decode(try ModelFile.readTensor(path: path), store: nil) } catch let e as QuantKitError {
                throw DataError.unreadable(input: name, file: path, reason: e.message)
            }
            if t.dtype == .string { throw DataError.dtypeMismatch(input: name, expected: target, file: path, actual: .string) }
        case .raw:
            t = try readRaw(path)
        }
        if let shape = signature.shape, t.rank == shape.count - 1 { t.shape.insert(1, at: 0) }
        try check(shape: t.shape, file: path)
        if !computed && !TensorConversion.canFeed(t.dtype, to: target) {
            throw DataError.dtypeMismatch(input: name, expected: target, file: path, actual: t.dtype)
        }
        return TensorConversion.convert(t, to: target)
    }

    /// Raw files: little-endian elements of `rawDType` (default: the input's type); the rows
    /// follow from the file size and the per-row shape (symbolic non-batch dims resolved as
    /// for random data).
    func readRaw(_ path: String) throws -> Tensor {
        let dt = config.rawDType ?? target
        guard let shape = signature.shape, !shape.isEmpty else {
            throw DataError.invalidConfig(input: config.name, "raw file '\(path)' needs a shape", fix: "set the input's shape")
        }
        let row = Array(resolvedShape(batch: 1).dropFirst())
        try limits.checkItem(dt, [1] + row, input: config.name, file: path, what: "one row")
        let rowBytes = dt.byteCount(elements: Tensor.elementCount(row))
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let e as QuantKitError {
            throw DataError.unreadable(input: config.name, file: path, reason: e.message)
        }
        guard rowBytes > 0, file.byteCount > 0, file.byteCount % rowBytes == 0 else {
            throw DataError.unreadable(input: config.name, file: path,
                                       reason: "\(file.byteCount) bytes is not a whole number of \(dt) \(DataError.shapeText(row)) rows (\(rowBytes) bytes each)")
        }
        return try Tensor(dtype: dt, shape: [file.byteCount / rowBytes] + row, copying: file.bytes)
    }

    /// Checks an item's (or a batch's) shape against the signature: same rank, equal fixed
    /// dimensions, at most the fixed batch size in dimension 0. Throws QK2104.
    func check(shape: [Int], file: String) throws {
        guard let expected = signature.shape else { return }
        func fail(_ d: Int?) -> QuantKitError {
            DataError.shapeMismatch(input: config.name, expected: signature.shapeText, file: file, actual: shape, dimension: d)
        }
        guard shape.count == expected.count else { throw fail(nil) }
        for (d, (want, have)) in zip(expected, shape).enumerated() {
            guard let want else { continue }
            if d == 0 ? have > want : have != want { throw fail(d) }
        }
    }

    /// The signature's shape with dimension 0 = `batch` and other symbolic dimensions from
    /// `symbolicDims` (by name) or `symbolicDimDefault`.
    func resolvedShape(batch: Int) -> [Int] {
        guard let shape = signature.shape else { return [batch] }
        return shape.enumerated().map { d, v in
            if let v { return v }
            if d == 0 { return batch }
            return signature.symbols[d].flatMap { symbolicDims[$0] } ?? symbolicDimDefault
        }
    }

    /// A random item: one row (or the fixed batch size) of the resolved shape.
    func randomItem(_ k: Int) throws -> Tensor {
        let shape = resolvedShape(batch: 1)
        try limits.checkItem(target, shape, input: config.name, file: nil, what: "a random item of the declared shape")
        return RandomData.item(dtype: target, shape: shape, seed: seed, input: index, item: k)
    }

    /// A whole batch from the Python function or the Swift closure.
    func preprocessed(paths: [String]) throws -> Tensor {
        let t: Tensor
        let label = python?.spec ?? "closure"
        if let custom {
            do { t = try custom(paths, config) } catch let e as QuantKitError { throw e } catch {
                throw DataError.preprocessFailed(input: config.name, function: label, reason: "\(error)")
            }
        } else {
            t = try python!.run(paths: paths)
        }
        try check(shape: t.shape, file: "\(label) on \(paths.first ?? "")...")
        guard TensorConversion.canFeed(t.dtype, to: target) else {
            throw DataError.dtypeMismatch(input: config.name, expected: target, file: "\(label) result", actual: t.dtype)
        }
        return TensorConversion.convert(t, to: target)
    }
}
