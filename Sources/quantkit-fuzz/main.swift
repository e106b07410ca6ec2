// libFuzzer entry point for QuantKit's readers of outside input. Built only by scripts/fuzz.sh
// (`swift build --sanitize fuzzer --product quantkit-fuzz`, which links libFuzzer's main); a
// plain `swift build` makes a binary that does nothing. No top-level code: with
// --sanitize fuzzer the file is compiled as a library and libFuzzer owns `main`.
//
// The target is chosen by QK_FUZZ_TARGET (this harness only, never the library):
//   onnx    Model.load + Verifier.verify + building an executor plan
//   npy     Npy.read
//   pb      a TensorProto file (ModelFile.readTensor + TensorProtoCodec.decode)
//   image   ImageDecoder.decode (JPEG, PNG, BMP by signature)
//   json    QuantizerConfiguration(contentsOf:) of an XQuant-style .json
//   toml    QuantizerConfiguration(contentsOf:) of an Icraft-style .toml
//   list    ItemDiscovery.parse of a list file
//   plan    PrecisionPlan(contentsOf:) of a plan CSV; a plan read must read back the same from its own CSV
// Each input is written to a file (the readers take paths, as users give them) and read back;
// a thrown error is a correct answer, a trap or an allocation past libFuzzer's limits is a bug.
import Foundation
import QuantKit

enum FuzzTarget: String, CaseIterable {
    case onnx, npy, pb, image, json, toml, list, plan

    static let chosen: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["QK_FUZZ_TARGET"] ?? ""
        guard let t = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("set QK_FUZZ_TARGET to one of \(allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        return t
    }()

    static let folder: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let dir = base + "/quantkit-fuzz-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    var fileName: String {
        switch self {
        case .onnx: "m.onnx"
        case .npy: "x.npy"
        case .pb: "x.pb"
        case .image: "x.img"
        case .json: "c.json"
        case .toml: "c.toml"
        case .list: "l.txt"
        case .plan: "p.plan.csv"
        }
    }

    func run(_ data: Data) {
        let path = FuzzTarget.folder + "/" + fileName
        guard FileManager.default.createFile(atPath: path, contents: data) else { return }
        switch self {
        case .onnx:
            guard let m = try? Model.load(path: path) else { return }
            _ = Verifier.verify(m)
            guard (try? Verifier.check(m, codes: Verifier.loadCodes)) != nil else { return }
            _ = try? Executor(model: m, options: ExecutorOptions(threads: 1))
        case .npy:
            _ = try? Npy.read(path: path)
        case .pb:
            guard let p = try? ModelFile.readTensor(path: path) else { return }
            _ = try? TensorProtoCodec.decode(p, store: nil)
        case .image:
            _ = try? ImageDecoder.decode(path: path, input: "x", maxPixels: 1 << 22)
        case .json, .toml:
            guard let c = try? QuantizerConfiguration(contentsOf: path) else { return }
            _ = try? c.validate(statisticsGiven: true)
        case .list:
            _ = try? ItemDiscovery.parse(String(decoding: data, as: UTF8.self), listPath: path, checkExists: false)
        case .plan:
            guard let p = try? PrecisionPlan(contentsOf: path) else { return }
            // What QuantKit writes of a plan it read is a plan it reads back unchanged.
            let again = try? PrecisionPlan(csv: p.csv(), path: path)
            precondition(again == p, "a plan's CSV does not read back as the same plan")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let start else { return 0 }
    FuzzTarget.chosen.run(Data(bytes: start, count: count))
    return 0
}
