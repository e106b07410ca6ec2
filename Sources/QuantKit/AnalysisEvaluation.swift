import Foundation

/// Runs a user's evaluation command on a model: `{model}` in the command is replaced by the
/// model path (shell-quoted); the metric is the last number on the last non-empty line of
/// stdout, or the last number in `metricsFile` when given (read after the command ran).
public struct UserEvaluation: Sendable {
    public var command: String
    public var metricsFile: String?

    public init(command: String, metricsFile: String? = nil) {
        self.command = command
        self.metricsFile = metricsFile
    }

    public func evaluate(model: String) throws -> Double {
        let quoted = "'" + model.replacingOccurrences(of: "'", with: "'\\''") + "'"
        let cmd = command.replacingOccurrences(of: "{model}", with: quoted)
        if let metricsFile { try? FileManager.default.removeItem(atPath: metricsFile) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", cmd]
        let out = Pipe()
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("quantkit-eval-\(UUID().uuidString).err").path
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: errPath)
        do { try p.run() } catch {
            throw QuantKitError("QK6003", "cannot start the evaluation command '\(cmd)' (\(error))", fix: "check --eval-command")
        }
        // stderr goes to a file and stdout is read to the end before waiting, so a chatty
        // command cannot block on a full pipe.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let errData = FileManager.default.contents(atPath: errPath) ?? Data()
        guard p.terminationStatus == 0 else {
            let tail = String(decoding: errData.suffix(500), as: UTF8.self)
            throw QuantKitError("QK6003", "the evaluation command '\(cmd)' exited with status \(p.terminationStatus): \(tail)",
                                fix: "run the command by hand on the model and fix it")
        }
        let text: String
        let source: String
        if let metricsFile {
            guard let d = FileManager.default.contents(atPath: metricsFile) else {
                throw QuantKitError("QK6004", "the evaluation command did not write the metrics file '\(metricsFile)'", fix: "make the command write its metric there")
            }
            text = String(decoding: d, as: UTF8.self)
            source = "metrics file '\(metricsFile)'"
        } else {
            text = String(decoding: outData, as: UTF8.self).split(whereSeparator: \.isNewline).last { !$0.allSatisfy(\.isWhitespace) }.map(String.init) ?? ""
            source = "the last line of stdout"
        }
        guard let v = UserEvaluation.lastNumber(in: text) else {
            throw QuantKitError("QK6004", "no number in \(source) of '\(cmd)': '\(text.prefix(200))'",
                                fix: "print the metric as a number on the last line (or write it to the metrics file)")
        }
        return v
    }

    /// The last decimal number in `text` (e.g. `top1: 0.754` → 0.754).
    public static func lastNumber(in text: String) -> Double? {
        var best: Double?
        var token = ""
        func flush() {
            while let c = token.last, !c.isNumber { token.removeLast() }
            if let v = Double(token) { best = v }
            token = ""
        }
        for c in text {
            if c.isNumber || c == "." || c == "-" || c == "+" || ((c == "e" || c == "E") && !token.isEmpty) { token.append(c) } else { flush() }
        }
        flush()
        return best
    }
}

/// The built-in classification evaluator: top-1/top-5 accuracy of a model's class scores
/// against a labels file (one `PATH CLASS` per line, separated by whitespace, comma or tab;
/// a path matches a data file by its full path or its file name).
public struct ClassificationEvaluator: Sendable {
    public private(set) var labels: [String: Int] = [:]
    public private(set) var counts = (items: 0, floatTop1: 0, floatTop5: 0, quantTop1: 0, quantTop5: 0)

    public init(labelsFile path: String) throws {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw QuantKitError("QK6005", "cannot read labels file '\(path)'", fix: "check the path")
        }
        for (n, line) in String(decoding: d, as: UTF8.self).split(whereSeparator: \.isNewline).enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            guard let sep = t.lastIndex(where: { $0 == " " || $0 == "," || $0 == "\t" }),
                  let c = Int(t[t.index(after: sep)...].trimmingCharacters(in: .whitespaces)) else {
                throw QuantKitError("QK6005", "labels file '\(path)' line \(n + 1) is not 'PATH CLASS': \(t)", fix: "write one image path and its class index per line")
            }
            let file = t[..<sep].trimmingCharacters(in: .whitespaces)
            labels[URL(fileURLWithPath: file).standardizedFileURL.path] = c
            labels[URL(fileURLWithPath: file).lastPathComponent] = c
        }
    }

    func label(_ file: String) -> Int? {
        labels[URL(fileURLWithPath: file).standardizedFileURL.path] ?? labels[URL(fileURLWithPath: file).lastPathComponent]
    }

    /// Scores one batch: `files` are the batch's item files (of the image input), `float` and
    /// `quantized` the class scores [N, C] of the first output.
    public mutating func add(files: [String], float: Tensor, quantized: Tensor) {
        guard let c = float.shape.last, c >= 2, float.count == quantized.count, float.count == files.count * c else { return }
        let fv = float.floats(), qv = quantized.floats()
        for (i, f) in files.enumerated() {
            guard let y = label(f) else { continue }
            counts.items += 1
            let fr = ClassificationEvaluator.rank(of: y, in: fv[(i * c)..<((i + 1) * c)])
            let qr = ClassificationEvaluator.rank(of: y, in: qv[(i * c)..<((i + 1) * c)])
            if fr == 0 { counts.floatTop1 += 1 }
            if fr < 5 { counts.floatTop5 += 1 }
            if qr == 0 { counts.quantTop1 += 1 }
            if qr < 5 { counts.quantTop5 += 1 }
        }
    }

    /// How many classes score higher than `y` (0: top-1).
    static func rank(of y: Int, in scores: ArraySlice<Float>) -> Int {
        guard y >= 0, y < scores.count else { return Int.max }
        let s = scores[scores.startIndex + y]
        return scores.filter { $0 > s }.count
    }

    /// Top-1 and top-5 accuracy (%) before and after quantization; empty when no labelled item was seen.
    public var evaluations: [AnalysisReport.Evaluation] {
        guard counts.items > 0 else { return [] }
        let n = Double(counts.items) / 100
        return [AnalysisReport.Evaluation(name: "top-1 accuracy % (\(counts.items) labelled items)", float: Double(counts.floatTop1) / n, quantized: Double(counts.quantTop1) / n),
                AnalysisReport.Evaluation(name: "top-5 accuracy % (\(counts.items) labelled items)", float: Double(counts.floatTop5) / n, quantized: Double(counts.quantTop5) / n)]
    }
}
