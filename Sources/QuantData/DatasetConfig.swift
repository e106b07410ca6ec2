import QuantCore

/// The kind of file an input reads. Raw values follow XQuant's `file_type` names.
public enum FileType: String, Codable, Sendable, CaseIterable {
    case image = "img", npy, raw, pb

    /// The type a path's extension implies, or nil.
    public static func infer(path: String) -> FileType? {
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        switch ext {
        case "jpg", "jpeg", "png", "bmp": return .image
        case "npy": return .npy
        case "pb": return .pb
        case "raw", "bin": return .raw
        default: return nil
        }
    }
}

/// Where an input's items come from.
public enum InputSource: Codable, Sendable, Equatable {
    /// Every supported file under a folder, recursively, sorted by relative path (byte order).
    case folder(String)
    /// A list file: one path per line, relative to the list's folder or absolute.
    case list(String)
    /// Explicit files, one item each.
    case files([String])
    /// Seeded random data from the input's declared shape and type (XQuant's `infer_auto`):
    /// floats ~ N(0, 1), signed integers uniform in [-10, 10), unsigned in [1, 10), bool 0/1.
    case random
    /// Column `column` of the dataset's `sharedList` (lines `a.npy;b.npy`).
    case sharedList(column: Int)
    /// The data set's `stream` (batches of .npy frames on a pipe; see ``FrameStream``).
    case stream
    /// A decoder's past key/value input fed empty (its symbolic non-batch dimensions 0): the
    /// prefill of a decoder exported with a cache, given token sequences only.
    case emptyCache

    // JSON: {"folder": "img"}, {"list": "cal.txt"}, {"files": ["a.npy"]}, "random", {"sharedList": 0}, "stream".
    enum Key: String, CodingKey { case folder, list, files, sharedList }

    public init(from decoder: Decoder) throws {
        if let s = try? decoder.singleValueContainer().decode(String.self), ["random", "stream", "emptyCache"].contains(s) {
            self = s == "random" ? .random : s == "stream" ? .stream : .emptyCache
            return
        }
        let c = try decoder.container(keyedBy: Key.self)
        if let v = try c.decodeIfPresent(String.self, forKey: .folder) { self = .folder(v) }
        else if let v = try c.decodeIfPresent(String.self, forKey: .list) { self = .list(v) }
        else if let v = try c.decodeIfPresent([String].self, forKey: .files) { self = .files(v) }
        else if let v = try c.decodeIfPresent(Int.self, forKey: .sharedList) { self = .sharedList(column: v) }
        else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "a source is \"random\" or one of {\"folder\": ...}, {\"list\": ...}, {\"files\": [...]}, {\"sharedList\": column}"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        if self == .random || self == .stream || self == .emptyCache {
            var c = encoder.singleValueContainer()
            try c.encode(self == .random ? "random" : self == .stream ? "stream" : "emptyCache")
            return
        }
        var c = encoder.container(keyedBy: Key.self)
        switch self {
        case .folder(let v): try c.encode(v, forKey: .folder)
        case .list(let v): try c.encode(v, forKey: .list)
        case .files(let v): try c.encode(v, forKey: .files)
        case .sharedList(let v): try c.encode(v, forKey: .sharedList)
        case .random, .stream, .emptyCache: break
        }
    }
}

/// What to do with NaN or Inf values in a batch.
public enum NonFinitePolicy: String, Codable, Sendable {
    /// Count them and add a QK2110 warning to the report.
    case warn
    /// Throw QK2110.
    case fail
}

/// One model input's calibration data (XQuant `input_parametres[]`: `input_name` → `name`,
/// `input_shape` → `shape`, `dtype`, `file_type` → `fileType`, `color_format`/`mean_value`/
/// `std_value` → `image`, `preprocess_file` → `preprocessFile`, `data_list_path` → `source: .list`).
public struct InputConfig: Codable, Sendable, Equatable {
    public var name: String
    public var source: InputSource
    /// Overrides the model's shape; -1 marks a symbolic dimension.
    public var shape: [Int]?
    /// Element type fed to the model; nil uses the model's.
    public var dtype: DType?
    /// nil infers the type from each file's extension.
    public var fileType: FileType?
    /// Element type of raw files; nil uses `dtype` (or the model's type).
    public var rawDType: DType?
    /// Image pipeline; nil uses `ImagePreprocessing()` defaults for image files.
    public var image: ImagePreprocessing?
    /// A Python function `file.py:function(path_list, input_parameters) -> array` that
    /// replaces the built-in readers for this input.
    public var preprocessFile: String?

    public init(name: String, source: InputSource, shape: [Int]? = nil, dtype: DType? = nil, fileType: FileType? = nil,
                rawDType: DType? = nil, image: ImagePreprocessing? = nil, preprocessFile: String? = nil) {
        self.name = name
        self.source = source
        self.shape = shape
        self.dtype = dtype
        self.fileType = fileType
        self.rawDType = rawDType
        self.image = image
        self.preprocessFile = preprocessFile
    }
}

/// Budgets that bound what one item may cost before it is decoded or generated, so that a
/// hostile or mistaken header (an 86 KB JPEG declaring 65500×65500 pixels, a model input
/// declared [1,3,100000,100000]) is refused with QK2115 instead of exhausting memory.
public struct DataLimits: Codable, Sendable, Equatable {
    /// Pixels an image header may declare (width × height); 100 million by default.
    public var maxImagePixels: Int
    /// Bytes of one item as fed to the model (a random item, a resized image, raw rows);
    /// 2 GiB by default.
    public var maxItemBytes: Int

    public init(maxImagePixels: Int = 100_000_000, maxItemBytes: Int = 2 << 30) {
        self.maxImagePixels = maxImagePixels
        self.maxItemBytes = maxItemBytes
    }

    enum CodingKeys: String, CodingKey { case maxImagePixels, maxItemBytes }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = DataLimits()
        maxImagePixels = try c.decodeIfPresent(Int.self, forKey: .maxImagePixels) ?? d.maxImagePixels
        maxItemBytes = try c.decodeIfPresent(Int.self, forKey: .maxItemBytes) ?? d.maxItemBytes
    }

    /// QK2115 unless a `dtype` tensor of `shape` fits `maxItemBytes` (and its size is an Int).
    func checkItem(_ dtype: DType, _ shape: [Int], input: String, file: String?, what: String) throws {
        let bytes = Tensor.checkedByteCount(dtype, shape)
        guard let b = bytes, b <= maxItemBytes else {
            let size = bytes.map { "\($0) bytes" } ?? "more bytes than memory can address"
            throw DataError.overBudget(input: input, file: file, "\(what) \(DataError.shapeText(shape)) of \(dtype) needs \(size), above the limit of \(maxItemBytes)",
                                       option: "--max-item-bytes, or `limits.maxItemBytes` in the data configuration")
        }
    }
}

/// The calibration data set: per-input sources plus batching.
public struct DatasetConfig: Codable, Sendable, Equatable {
    public var inputs: [InputConfig]
    /// A list whose lines hold one file per input separated by `;` (columns chosen by `.sharedList`).
    public var sharedList: String?
    public var batchSize: Int
    /// Stop after this many batches; nil reads every item.
    public var steps: Int?
    /// Batches decoded ahead in the background.
    public var prefetch: Int
    public var seed: UInt64
    /// Items produced when every input is random (default: batchSize × steps, or batchSize).
    public var randomItems: Int?
    /// Value for symbolic non-batch dimensions of random inputs, unless named in `symbolicDims`.
    public var symbolicDimDefault: Int
    public var symbolicDims: [String: Int]
    public var nonFinite: NonFinitePolicy
    /// Interpreter for `preprocessFile` functions.
    public var python: String
    public var limits: DataLimits
    /// A pipe (FIFO, file, `/dev/fd/N` or `-` for standard input) carrying every input's batches
    /// as .npy frames (``FrameStream``); inputs then have the source `stream`, and `batchSize`
    /// is the producer's.
    public var stream: String?
    /// Items of the stream kept for later passes of the same run (the analysis, GPTQ, bias
    /// correction): they replay at most these.
    public var streamRetainItems: Int

    public init(inputs: [InputConfig], sharedList: String? = nil, batchSize: Int = 1, steps: Int? = nil, prefetch: Int = 2,
                seed: UInt64 = 0, randomItems: Int? = nil, symbolicDimDefault: Int = 1, symbolicDims: [String: Int] = [:],
                nonFinite: NonFinitePolicy = .warn, python: String = "python3", limits: DataLimits = DataLimits()) {
        self.inputs = inputs
        self.sharedList = sharedList
        self.batchSize = batchSize
        self.steps = steps
        self.prefetch = prefetch
        self.seed = seed
        self.randomItems = randomItems
        self.symbolicDimDefault = symbolicDimDefault
        self.symbolicDims = symbolicDims
        self.nonFinite = nonFinite
        self.python = python
        self.limits = limits
        stream = nil
        streamRetainItems = 0
    }

    /// Whether a model input is a decoder's past key/value cache: its name starts with "past"
    /// and a non-batch dimension is symbolic (the past length).
    public static func isCacheInput(_ s: InputSignature) -> Bool {
        s.name.lowercased().hasPrefix("past") && (s.shape.map { $0.dropFirst().contains(nil) } ?? false)
    }

    /// `inputs` with an empty-cache source added for every cache input of `signatures` that
    /// has none (a decoder calibrated on token sequences).
    public static func withEmptyCaches(_ inputs: [InputConfig], signatures: [InputSignature]) -> [InputConfig] {
        let given = Set(inputs.map(\.name))
        return inputs + signatures.filter { !given.contains($0.name) && isCacheInput($0) }.map { InputConfig(name: $0.name, source: .emptyCache) }
    }

    /// Every input of `signatures` read from the stream at `path` (a decoder's cache inputs not
    /// sent are fed empty).
    public static func streaming(_ path: String, signatures: [InputSignature], retainItems: Int) -> DatasetConfig {
        var d = DatasetConfig(inputs: signatures.map { InputConfig(name: $0.name, source: isCacheInput($0) ? .emptyCache : .stream) })
        d.stream = path
        d.streamRetainItems = retainItems
        return d
    }

    enum CodingKeys: String, CodingKey {
        case inputs, sharedList, batchSize, steps, prefetch, seed, randomItems, symbolicDimDefault, symbolicDims, nonFinite, python, limits, stream, streamRetainItems
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(inputs: try c.decode([InputConfig].self, forKey: .inputs))
        sharedList = try c.decodeIfPresent(String.self, forKey: .sharedList)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? 1
        steps = try c.decodeIfPresent(Int.self, forKey: .steps)
        prefetch = try c.decodeIfPresent(Int.self, forKey: .prefetch) ?? 2
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
        randomItems = try c.decodeIfPresent(Int.self, forKey: .randomItems)
        symbolicDimDefault = try c.decodeIfPresent(Int.self, forKey: .symbolicDimDefault) ?? 1
        symbolicDims = try c.decodeIfPresent([String: Int].self, forKey: .symbolicDims) ?? [:]
        nonFinite = try c.decodeIfPresent(NonFinitePolicy.self, forKey: .nonFinite) ?? .warn
        python = try c.decodeIfPresent(String.self, forKey: .python) ?? "python3"
        limits = try c.decodeIfPresent(DataLimits.self, forKey: .limits) ?? DataLimits()
        stream = try c.decodeIfPresent(String.self, forKey: .stream)
        streamRetainItems = try c.decodeIfPresent(Int.self, forKey: .streamRetainItems) ?? 0
    }

    /// Checks the configuration against the model's runtime inputs (name and declared type).
    /// Throws QK2101 (input count), QK2102 (unknown name) or QK2111 (invalid value).
    public func validate(modelInputs: [InputSignature]) throws {
        let names = modelInputs.map(\.name)
        for i in inputs where !names.contains(i.name) { throw DataError.unknownInput(i.name, model: names) }
        if inputs.count != modelInputs.count || Set(inputs.map(\.name)).count != inputs.count {
            throw DataError.inputCount(model: names, configured: inputs.map(\.name))
        }
        if batchSize < 1 { throw DataError.invalidConfig(input: nil, "batchSize is \(batchSize)", fix: "use a batch size of 1 or more") }
        if let steps, steps < 1 { throw DataError.invalidConfig(input: nil, "steps is \(steps)", fix: "use 1 or more, or leave it unset to read everything") }
        if prefetch < 1 { throw DataError.invalidConfig(input: nil, "prefetch is \(prefetch)", fix: "prefetch at least 1 batch") }
        if let n = randomItems, n < 1 { throw DataError.invalidConfig(input: nil, "randomItems is \(n)", fix: "use 1 or more") }
        if symbolicDimDefault < 1 || symbolicDims.values.contains(where: { $0 < 1 }) {
            throw DataError.invalidConfig(input: nil, "symbolic dimension values must be positive", fix: "use 1 or more")
        }
        let columns = inputs.compactMap { i -> Int? in if case .sharedList(let c) = i.source { c } else { nil } }
        if !columns.isEmpty && sharedList == nil {
            throw DataError.invalidConfig(input: nil, "inputs use sharedList columns but no sharedList is set", fix: "set sharedList to the list file")
        }
        if Set(columns).count != columns.count || columns.contains(where: { $0 < 0 }) {
            throw DataError.invalidConfig(input: nil, "sharedList columns \(columns) repeat or are negative", fix: "give each input its own column, starting at 0")
        }
        let streamed = inputs.filter { $0.source == .stream || $0.source == .emptyCache }.count
        if inputs.contains(where: { $0.source == .stream }) && stream == nil {
            throw DataError.invalidConfig(input: nil, "inputs read the stream but no stream is set", fix: "set stream to the pipe's path (--input-stream PATH, '-' for standard input)")
        }
        if stream != nil && streamed != inputs.count {
            throw DataError.invalidConfig(input: nil, "a stream carries every input, but \(inputs.count - streamed) input(s) have other sources",
                                          fix: "send every input's frames on the stream, or use files without --input-stream")
        }
        if streamRetainItems < 0 { throw DataError.invalidConfig(input: nil, "streamRetainItems is \(streamRetainItems)", fix: "use 0 or more") }
        if limits.maxImagePixels < 1 || limits.maxItemBytes < 1 {
            throw DataError.invalidConfig(input: nil, "limits \(limits.maxImagePixels) pixels, \(limits.maxItemBytes) bytes", fix: "use positive limits")
        }
        for i in inputs {
            if let shape = i.shape, shape.contains(where: { $0 == 0 || $0 < -1 }) {
                throw DataError.invalidConfig(input: i.name, "shape \(shape) has a dimension that is not positive or -1", fix: "use positive sizes, -1 for symbolic")
            }
            if let dt = i.dtype ?? i.rawDType, dt == .string || dt.bitWidth < 8 {
                throw DataError.invalidConfig(input: i.name, "element type \(dt) is not supported for calibration data", fix: "use a numeric type of 8 bits or more")
            }
            if i.fileType == .raw, i.shape == nil, modelInputs.first(where: { $0.name == i.name })?.shape == nil {
                throw DataError.invalidConfig(input: i.name, "raw files need a shape but neither the model nor the configuration gives one", fix: "set the input's shape")
            }
            if let p = i.preprocessFile {
                let parts = p.split(separator: ":", omittingEmptySubsequences: false)
                if parts.count != 2 || !parts[0].hasSuffix(".py") || parts[1].isEmpty {
                    throw DataError.invalidConfig(input: i.name, "preprocessFile '\(p)' is not 'file.py:function'", fix: "write it as path/to/file.py:function_name")
                }
            }
            try i.image?.validate(input: i.name)
        }
    }
}

/// A model input as the data set sees it: name, element type and declared shape (symbolic
/// dimensions are nil, with their name when known).
public struct InputSignature: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    /// nil when the rank is unknown.
    public var shape: [Int?]?
    public var symbols: [String?]

    public init(name: String, dtype: DType, shape: [Int?]?, symbols: [String?] = []) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.symbols = symbols.isEmpty ? Array(repeating: nil, count: shape?.count ?? 0) : symbols
    }

    /// `[1,3,224,224]` with symbols for unknown dimensions.
    public var shapeText: String {
        guard let shape else { return "[?]" }
        return "[" + zip(shape, symbols).map { d, s in d.map(String.init) ?? s ?? "?" }.joined(separator: ",") + "]"
    }
}
