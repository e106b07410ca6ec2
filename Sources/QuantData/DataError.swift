import QuantCore

/// The calibration-data errors (codes QK2101–QK2113). Every error names the input and file it
/// concerns and says what to do; docs/ERRORS.md ("2xxx — calibration data") lists them all.
public enum DataError {
    /// QK2101: the configuration describes a different number of inputs than the model has.
    public static func inputCount(model: [String], configured: [String]) -> QuantKitError {
        QuantKitError(
            "QK2101",
            "the model has \(model.count) input(s) \(list(model)) but the calibration data configures \(configured.count) \(list(configured))",
            fix: "configure exactly one source per model input (or a random source for inputs without data)")
    }

    /// QK2101: one input given two sources.
    public static func repeatedInput(_ name: String, option: String) -> QuantKitError {
        QuantKitError("QK2101", "\(option) names input '\(name)' twice", fix: "give each model input one source")
    }

    /// QK2102: a configured input name is not an input of the model.
    public static func unknownInput(_ name: String, model: [String]) -> QuantKitError {
        QuantKitError("QK2102", "calibration input '\(name)' is not an input of the model \(list(model))",
                      fix: "use one of the model's input names (see `quantkit inspect`)")
    }

    /// QK2103: a source yields no items.
    public static func noItems(input: String, searched: String, detail: String = "") -> QuantKitError {
        QuantKitError("QK2103", "calibration input '\(input)' finds 0 items in '\(searched)'\(detail.isEmpty ? "" : " (\(detail))")",
                      fix: "point the input at a folder or list file holding supported files (.jpg .jpeg .png .bmp .npy .pb .raw .bin)")
    }

    /// QK2104: a file's shape does not fit the input's declared shape.
    public static func shapeMismatch(input: String, expected: String, file: String, actual: [Int], dimension: Int?) -> QuantKitError {
        let which = dimension.map { $0 == 0 ? " (batch dimension 0 differs)" : " (dimension \($0) differs)" } ?? " (rank differs)"
        return QuantKitError(
            "QK2104", "input '\(input)' expects shape \(expected) but calibration file '\(file)' has \(shapeText(actual))\(which)",
            fix: dimension == 0 ? "make the batch dimension match or declare it symbolic"
                : "write the file with the input's shape, or set the input's shape in the configuration")
    }

    /// QK2105: a file's element type cannot be fed to the input.
    public static func dtypeMismatch(input: String, expected: DType, file: String, actual: DType) -> QuantKitError {
        QuantKitError("QK2105", "input '\(input)' expects \(expected) but calibration file '\(file)' holds \(actual)",
                      fix: "save the data as \(expected) (floating data cannot be fed to integer inputs)")
    }

    /// QK2106: per-input lists (or folders) hold different numbers of items.
    public static func lengthMismatch(_ counts: [(input: String, count: Int)]) -> QuantKitError {
        let text = counts.map { "'\($0.input)' has \($0.count)" }.joined(separator: ", ")
        return QuantKitError("QK2106", "calibration inputs have different numbers of items: \(text)",
                             fix: "give every input the same number of files, in the same order")
    }

    /// QK2107: the file type is not supported (or not the one configured).
    public static func unsupportedFile(input: String, file: String, detail: String) -> QuantKitError {
        QuantKitError("QK2107", "calibration input '\(input)' cannot read '\(file)': \(detail)",
                      fix: "use JPEG, PNG, BMP, .npy, .pb (onnx.TensorProto) or raw files, or set the input's file type")
    }

    /// QK2108: a file cannot be read or is corrupt.
    public static func unreadable(input: String, file: String, reason: String) -> QuantKitError {
        QuantKitError("QK2108", "calibration input '\(input)' cannot read '\(file)': \(reason)",
                      fix: "check that the file exists and is complete; re-create it if it was cut short")
    }

    /// QK2109: a list file names a file that does not exist.
    public static func missingListed(list: String, line: Int, file: String) -> QuantKitError {
        QuantKitError("QK2109", "list file '\(list)' line \(line) names '\(file)', which does not exist",
                      fix: "paths in a list are relative to the list file's folder or absolute; fix or remove the line")
    }

    /// QK2110: NaN or Inf values in a batch (an error when the policy is `.fail`; otherwise a warning).
    public static func nonFinite(input: String, batch: Int, count: Int, files: [String]) -> QuantKitError {
        QuantKitError("QK2110", "calibration input '\(input)' batch \(batch) holds \(count) NaN/Inf value(s) (files \(files.prefix(4).joined(separator: ", "))\(files.count > 4 ? ", ..." : ""))",
                      fix: "clean the data; NaN/Inf would corrupt the calibration ranges")
    }

    /// QK2111: the configuration is invalid.
    public static func invalidConfig(input: String?, _ message: String, fix: String) -> QuantKitError {
        QuantKitError("QK2111", input.map { "calibration input '\($0)': \(message)" } ?? "calibration data: \(message)", fix: fix)
    }

    /// QK2112: a user preprocessing function failed or returned an unusable array.
    public static func preprocessFailed(input: String, function: String, reason: String) -> QuantKitError {
        QuantKitError("QK2112", "preprocessing '\(function)' for input '\(input)' failed: \(reason)",
                      fix: "run the function by hand on the same paths; it must return one array with the batch first")
    }

    /// QK2113: a list file cannot be read or has a malformed line.
    public static func badList(list: String, line: Int?, reason: String) -> QuantKitError {
        QuantKitError("QK2113", "list file '\(list)'\(line.map { " line \($0)" } ?? ""): \(reason)",
                      fix: "write one path per line (several inputs: paths separated by ';'); '#' starts a comment")
    }

    /// QK2115: an item would exceed a resource budget (`DataLimits`), checked from a header or
    /// a declared shape before anything is allocated.
    public static func overBudget(input: String, file: String?, _ what: String, option: String) -> QuantKitError {
        QuantKitError("QK2115", "calibration input '\(input)'\(file.map { " file '\($0)'" } ?? ""): \(what)",
                      fix: "if the data is right, raise the limit (\(option)); otherwise fix the file or the declared shape")
    }

    static func shapeText(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ",") + "]" }
    static func list(_ names: [String]) -> String { "(" + names.map { "'\($0)'" }.joined(separator: ", ") + ")" }
}
