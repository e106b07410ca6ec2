import Foundation
import QuantCore
import QuantONNX

/// Collects tensors that a save stores in a side file and writes that file atomically.
///
/// Offsets are aligned (4096 bytes for tensors of 1 MiB and more, 64 otherwise), so that the
/// file can be memory-mapped tensor by tensor.
final class ExternalDataWriter {
    let location: String
    let threshold: Int
    private(set) var entries: [(Tensor, Int)] = []
    private(set) var size = 0

    init(location: String, threshold: Int) {
        self.location = location
        self.threshold = threshold
    }

    func add(_ tensor: Tensor) -> [Onnx_StringStringEntryProto] {
        let align = tensor.byteCount >= 1 << 20 ? 4096 : 64
        let offset = (size + align - 1) / align * align
        entries.append((tensor, offset))
        size = offset + tensor.byteCount
        func kv(_ k: String, _ v: String) -> Onnx_StringStringEntryProto {
            var e = Onnx_StringStringEntryProto()
            e.key = k
            e.value = v
            return e
        }
        return [kv("location", location), kv("offset", "\(offset)"), kv("length", "\(tensor.byteCount)")]
    }

    func write(to path: String, batch: AtomicBatch?) throws {
        try AtomicFile.write(to: path, batch: batch) { sink in
            var at = 0
            let zeros = Data(count: 4096)
            for (tensor, offset) in entries {
                if offset > at { try sink.append(zeros.prefix(offset - at)) }
                try sink.append(tensor.bytes)
                at = offset + tensor.byteCount
            }
        }
    }
}
