import ArgumentParser
import Foundation
import QuantKit

@main
struct QuantKitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantkit",
        abstract: "Post-training quantization for ONNX models.",
        subcommands: [Inspect.self, Run.self, Calibrate.self, Quantize.self, Convert.self, DataPreview.self, Bench.self, Analyze.self, ExportAllOutputs.self])
}

/// Exit codes: 0 success, 2 bad input (a QuantKit error with a QKnnnn code), 1 internal failure,
/// 64 command-line usage error (argument parser).
enum ExitStatus {
    static let badInput: Int32 = 2
    static let internalFailure: Int32 = 1
}

/// Runs `body`, reporting coded errors as `error: QKnnnn ...` on stderr with exit code 2.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as CodedError {
        FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
        throw ExitCode(ExitStatus.badInput)
    } catch let e as ExitCode {
        throw e
    } catch {
        FileHandle.standardError.write(Data("internal error: \(error)\n".utf8))
        throw ExitCode(ExitStatus.internalFailure)
    }
}
