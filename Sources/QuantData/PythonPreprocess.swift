import Foundation
import QuantCore

/// Runs a user's Python preprocessing function `file.py:function(path_list, input_parameters)`
/// in a `python3` subprocess, once per batch, and reads the array it returns (exchanged as
/// .npy), so preprocessing files written for other quantizers work unchanged.
///
/// `input_parameters` is a dict with XQuant's keys: `input_name`, `input_shape`, `dtype`,
/// `file_type`, `color_format`, `mean_value`, `std_value`, `preprocess_file`, `data_list_path`.
/// The function must return one array (anything `numpy.asarray` accepts) with the batch first.
struct PythonPreprocess {
    let python: String
    let spec: String
    let input: InputConfig
    let parameters: Parameters

    /// The `input_parameters` dict handed to the function.
    struct Parameters: Codable {
        var input_name: String
        var input_shape: [Int]?
        var dtype: String
        var file_type: String?
        var color_format: String?
        var mean_value: [Double]?
        var std_value: [Double]?
        var preprocess_file: String
        var data_list_path: String?
    }

    init(python: String, input: InputConfig, signature: InputSignature) {
        self.python = python
        spec = input.preprocessFile ?? ""
        self.input = input
        var listPath: String?
        if case .list(let p) = input.source { listPath = p }
        parameters = Parameters(
            input_name: input.name, input_shape: input.shape ?? signature.shape?.map { $0 ?? -1 },
            dtype: (input.dtype ?? signature.dtype).name, file_type: input.fileType?.rawValue,
            color_format: input.image?.colorFormat.rawValue, mean_value: input.image?.mean, std_value: input.image?.std,
            preprocess_file: spec, data_list_path: listPath)
    }

    static let driver = """
        import importlib.util, json, sys
        import numpy as np
        args = json.load(open(sys.argv[1]))
        path, name = args["spec"].rsplit(":", 1)
        spec = importlib.util.spec_from_file_location("quantkit_user_preprocess", path)
        mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(path)))
        spec.loader.exec_module(mod)
        arr = np.ascontiguousarray(np.asarray(getattr(mod, name)(args["paths"], args["params"])))
        np.save(sys.argv[2], arr)
        """

    struct Request: Codable {
        var spec: String
        var paths: [String]
        var params: Parameters
    }

    /// Calls the function on `paths` and returns its array. Throws QK2112 on any failure.
    func run(paths: [String]) throws -> Tensor {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("quantkit-pre-\(UUID().uuidString)")
        do { try fm.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw DataError.preprocessFailed(input: input.name, function: spec, reason: "cannot create a temporary folder: \(error)")
        }
        defer { try? fm.removeItem(at: dir) }
        let script = dir.appendingPathComponent("driver.py"), request = dir.appendingPathComponent("request.json")
        let output = dir.appendingPathComponent("out.npy")
        do {
            try Data(PythonPreprocess.driver.utf8).write(to: script)
            try JSONEncoder().encode(Request(spec: spec, paths: paths, params: parameters)).write(to: request)
        } catch {
            throw DataError.preprocessFailed(input: input.name, function: spec, reason: "cannot write its arguments: \(error)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [python, script.path, request.path, output.path]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch {
            throw DataError.preprocessFailed(input: input.name, function: spec, reason: "cannot start '\(python)': \(error)")
        }
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let tail = String(decoding: stderr, as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: " | ")
            throw DataError.preprocessFailed(input: input.name, function: spec, reason: "exit status \(p.terminationStatus): \(tail)")
        }
        do { return try Npy.read(path: output.path) } catch {
            throw DataError.preprocessFailed(input: input.name, function: spec, reason: "its result is not a numeric array (\(error))")
        }
    }
}
