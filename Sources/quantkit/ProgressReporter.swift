import Foundation
import QuantKit

/// Shows `StageProgress` on stderr: a redrawn bar with rate and ETA on a terminal, a plain line every
/// few seconds otherwise, JSON lines with `--log-json`, nothing with `--quiet`.
final class ProgressReporter {
    enum Mode { case bar, lines, json, quiet }
    let mode: Mode
    private var lastPrint = Date.distantPast
    /// The stage being reported, when it began (the previous stage's last report, or the start),
    /// and the time of the last report: rate and ETA are the stage's own.
    private var stage = ""
    private var stageStart = Date()
    private var lastEvent = Date()
    private var lastDone = 0

    init(quiet: Bool, json: Bool) {
        if quiet { mode = .quiet } else if json { mode = .json } else if isatty(2) != 0 { mode = .bar } else { mode = .lines }
    }

    func report(_ p: StageProgress) {
        let now = Date()
        // A new stage (or the same one starting over) begins now when it says so (done 0),
        // else at the previous report.
        if p.stage != stage || p.done < lastDone {
            stage = p.stage
            stageStart = p.done == 0 ? now : lastEvent
        }
        lastDone = p.done
        lastEvent = now
        let elapsed = now.timeIntervalSince(stageStart)
        let rate = elapsed > 0 ? Double(p.done) / elapsed : 0
        let finished = p.total.map { p.done >= $0 } ?? false
        switch mode {
        case .quiet: return
        case .json:
            let total = p.total.map { "\($0)" } ?? "null"
            let eta = p.total.flatMap { t in rate > 0 ? String(format: "%.1f", Double(max(0, t - p.done)) / rate) : nil } ?? "null"
            write("{\"stage\":\"\(p.stage)\",\"done\":\(p.done),\"total\":\(total),\"unit\":\"\(p.unit)\",\"elapsed_s\":\(String(format: "%.3f", elapsed)),\"rate\":\(String(format: "%.3f", rate)),\"eta_s\":\(eta)}\n")
        case .lines:
            guard finished || now.timeIntervalSince(lastPrint) >= 5 else { return }
            lastPrint = now
            write("\(p.stage): \(p.done)\(p.total.map { "/\($0)" } ?? "") \(p.unit), \(String(format: "%.1f", rate))/s\(eta(p, rate))\n")
        case .bar:
            guard finished || now.timeIntervalSince(lastPrint) >= 0.1 else { return }
            lastPrint = now
            var bar = ""
            if let t = p.total, t > 0 {
                let w = 30, filled = min(w, p.done * w / t)
                bar = "[" + String(repeating: "#", count: filled) + String(repeating: " ", count: w - filled) + "] "
            }
            write("\r\(p.stage) \(bar)\(p.done)\(p.total.map { "/\($0)" } ?? "") \(String(format: "%.1f", rate)) \(p.unit)/s\(eta(p, rate))\u{1B}[K" + (finished ? "\n" : ""))
        }
    }

    /// With `--log-json`, one JSON line per tuning round (the report's Tuning row, `"stage": "tune"`).
    func tuningRound(_ round: AnalysisReport.Tuning.Round) {
        guard mode == .json else { return }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard let data = try? enc.encode(round), var line = String(data: data, encoding: .utf8) else { return }
        line.insert(contentsOf: "\"stage\":\"tune\",", at: line.index(after: line.startIndex))
        write(line + "\n")
    }

    private func eta(_ p: StageProgress, _ rate: Double) -> String {
        guard let t = p.total, rate > 0, p.done < t else { return "" }
        let s = Int(Double(t - p.done) / rate)
        return String(format: ", ETA %d:%02d", s / 60, s % 60)
    }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}
